//! The workers table, filled from heartbeats: one row per run of a worker, alive while its
//! heartbeats come, `stopped` after its offline event, `gone` after three missed heartbeats.
//!
//! Recording a heartbeat is one transaction: the worker's row (only if this event is newer
//! than the one stored: events may arrive late or twice), and the increments of its
//! counters since the last event seen, added to the statistics (see [`crate::stats`]).
//! "Missed" is judged on the worker's own clock (`sent_at`), so a backlog of old heartbeats
//! drained at once does not make a dead worker look alive.

use palermo::admin::wire::event::{Heartbeat, RunningJob};
use serde::Serialize;
use sqlx::FromRow;

use crate::{
    error::{Result, StoreError},
    time, Store,
};

/// A worker, as `palermo workers` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkerRow {
    /// This run of the worker (new at each start).
    pub id: String,
    /// `hostname:pid:queues`.
    pub identity: String,
    pub host: String,
    pub pid: i64,
    pub queues: Vec<String>,
    pub concurrency: i64,
    #[serde(serialize_with = "time::serialize")]
    pub started_at: i64,
    #[serde(serialize_with = "time::serialize")]
    pub last_seen_at: i64,
    pub heartbeat_interval_ms: i64,
    pub processed: i64,
    pub failed: i64,
    /// The jobs it was running at its last heartbeat (none once stopped or gone).
    pub running: Vec<InFlight>,
    /// `alive`, `stopped` or `gone`.
    pub status: String,
    #[serde(serialize_with = "time::serialize_opt")]
    pub ended_at: Option<i64>,
    /// What it applied of the operators' commands: `running`, `quiet` or `stopping`.
    pub state: String,
    /// Its queues that are paused.
    pub paused: Vec<String>,
    /// Why the broker blocked the worker's connection at its last heartbeat (a resource
    /// alarm: `low on disk`, `low on memory`); `None` when it was not blocked.
    pub blocked: Option<String>,
}

/// A row of the workers table as stored: queues comma-separated, running jobs as JSON.
#[derive(sqlx::FromRow)]
struct WorkerRecord {
    id: String,
    identity: String,
    host: String,
    pid: i64,
    queues: String,
    concurrency: i64,
    started_at: i64,
    last_seen_at: i64,
    interval_ms: i64,
    processed: i64,
    failed: i64,
    running: String,
    status: String,
    ended_at: Option<i64>,
    state: String,
    paused: String,
    blocked: Option<String>,
}

impl From<WorkerRecord> for WorkerRow {
    fn from(record: WorkerRecord) -> Self {
        let running: Vec<RunningJob> = serde_json::from_str(&record.running).unwrap_or_default();
        let list = |text: &str| {
            text.split(',')
                .filter(|q| !q.is_empty())
                .map(String::from)
                .collect()
        };
        WorkerRow {
            id: record.id,
            identity: record.identity,
            host: record.host,
            pid: record.pid,
            queues: list(&record.queues),
            concurrency: record.concurrency,
            started_at: record.started_at,
            last_seen_at: record.last_seen_at,
            heartbeat_interval_ms: record.interval_ms,
            processed: record.processed,
            failed: record.failed,
            running: running.into_iter().map(InFlight::from).collect(),
            status: record.status,
            ended_at: record.ended_at,
            state: record.state,
            paused: list(&record.paused),
            blocked: record.blocked,
        }
    }
}

/// A job in flight on a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InFlight {
    pub id: String,
    pub name: String,
    pub queue: String,
    #[serde(serialize_with = "time::serialize")]
    pub started_at: i64,
    pub args_preview: String,
}

impl From<RunningJob> for InFlight {
    fn from(job: RunningJob) -> Self {
        InFlight {
            id: job.id,
            name: job.name,
            queue: job.queue,
            started_at: job.started_at,
            args_preview: job.preview,
        }
    }
}

impl Store {
    /// Records a heartbeat or offline event: the worker's row and the statistics.
    pub async fn record_heartbeat(&self, beat: &Heartbeat) -> Result<()> {
        let doing = "recording a heartbeat";
        let offline = beat.is_offline();
        let running = if offline {
            "[]".to_string()
        } else {
            serde_json::to_string(&beat.jobs).unwrap_or_else(|_| "[]".into())
        };
        // Read only from alive workers (`limits.rs`).
        let limits = serde_json::to_string(&beat.limits).unwrap_or_else(|_| "[]".into());
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await.map_err(StoreError::query(doing))?;
        // A write first: SQLite then takes its write lock at once instead of failing to
        // upgrade a read lock when another process writes; PostgreSQL locks the worker's row,
        // so another recorder's event of the same worker waits for this transaction and then
        // reads the counters it wrote (no increment is counted twice).
        sqlx::query(
            "INSERT INTO workers (id, identity, host, pid, queues, concurrency, started_at, \
             last_seen_at, interval_ms, seq, processed, failed, running, status, ended_at, \
             state, paused, blocked, limits) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18, $19) \
             ON CONFLICT (id) DO UPDATE SET last_seen_at = excluded.last_seen_at, \
             interval_ms = excluded.interval_ms, seq = excluded.seq, \
             processed = excluded.processed, failed = excluded.failed, \
             running = excluded.running, status = excluded.status, ended_at = excluded.ended_at, \
             state = excluded.state, paused = excluded.paused, blocked = excluded.blocked, \
             limits = excluded.limits \
             WHERE workers.seq < excluded.seq",
        )
        .bind(beat.id.to_string())
        .bind(&beat.identity)
        .bind(&beat.host)
        .bind(i64::from(beat.pid))
        .bind(beat.queues.join(","))
        .bind(as_i64(beat.concurrency as u64))
        .bind(beat.started_at)
        .bind(beat.sent_at)
        .bind(as_i64(beat.interval_ms))
        .bind(as_i64(beat.seq))
        .bind(as_i64(beat.processed))
        .bind(as_i64(beat.failed))
        .bind(running)
        .bind(if offline { "stopped" } else { "alive" })
        .bind(offline.then_some(beat.sent_at))
        .bind(beat.state.as_deref().unwrap_or("running"))
        .bind(beat.paused.join(","))
        .bind(beat.blocked.as_deref().filter(|_| !offline))
        .bind(limits)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(doing))?;
        crate::stats::add_increments(&mut tx, beat).await?;
        crate::timings::add_increments(&mut tx, beat).await?;
        tx.commit().await.map_err(StoreError::query(doing))
    }

    /// Marks gone every alive worker whose last event is more than `missed` heartbeat
    /// intervals old at `now`; returns how many.
    pub async fn mark_gone(&self, now: i64, missed: u32) -> Result<u64> {
        let result = sqlx::query(
            "UPDATE workers SET status = 'gone', ended_at = $1, running = '[]', blocked = NULL \
             WHERE status = 'alive' AND last_seen_at + $2 * interval_ms < $1",
        )
        .bind(now)
        .bind(i64::from(missed))
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("marking workers gone"))?;
        Ok(result.rows_affected())
    }

    /// Deletes stopped and gone workers last seen before `before`, with their counters.
    pub async fn prune_workers(&self, before: i64) -> Result<u64> {
        let doing = "pruning workers";
        let mut tx = self.pool.begin().await.map_err(StoreError::query(doing))?;
        for table in ["worker_counters", "worker_timings"] {
            let sql = format!(
                "DELETE FROM {table} WHERE worker_id IN \
                 (SELECT id FROM workers WHERE status <> 'alive' AND last_seen_at < $1)"
            );
            sqlx::query(&sql)
                .bind(before)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query(doing))?;
        }
        let deleted =
            sqlx::query("DELETE FROM workers WHERE status <> 'alive' AND last_seen_at < $1")
                .bind(before)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query(doing))?
                .rows_affected();
        tx.commit().await.map_err(StoreError::query(doing))?;
        Ok(deleted)
    }

    /// Every worker in the store: alive first, then the most recently seen.
    pub async fn workers(&self) -> Result<Vec<WorkerRow>> {
        let doing = "listing workers";
        let rows = sqlx::query(
            "SELECT id, identity, host, pid, queues, concurrency, started_at, last_seen_at, \
             interval_ms, processed, failed, running, status, ended_at, state, paused, \
             blocked FROM workers \
             ORDER BY CASE status WHEN 'alive' THEN 0 ELSE 1 END, last_seen_at DESC, identity",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(doing))?;
        rows.iter()
            .map(|row| WorkerRecord::from_row(row).map(WorkerRow::from))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::query(doing))
    }
}

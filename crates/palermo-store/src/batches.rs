//! Batches in the store (docs/workflows.md, "Batches"): the recorder applies the batch events
//! here, and exactly one recorder fires each callback.
//!
//! - Every event applies idempotently and in any order: a member row is upserted and its
//!   state only moves up (pending → failed → succeeded), so a repeated or redelivered event
//!   counts once, and an outcome recorded before its batch's opened event is kept.
//! - A batch is finished when its opened events named all its members and none is pending.
//!   Each check is one statement run after the event's own commit, so of two events
//!   committed at once the later check sees both.
//! - Firing: one conditional `UPDATE` flips a callback from `pending` to `firing`; only the
//!   recorder whose update changed the row publishes it, then marks it `fired`. A recorder
//!   that dies in between leaves it `firing`: after [`crate::RecorderConfig::batch_firing_lease`]
//!   another recorder claims it again and publishes it again, and the broker lock the
//!   publish takes (palermo's `fire_batch_callback`) drops that second copy.

use palermo::admin::wire::batch::{Callback, Opened, Outcome, FAILED_IDS_MAX};
use serde::Serialize;
use sqlx::{FromRow, Row};
use uuid::Uuid;

use crate::{
    error::{Result, StoreError},
    time, Store,
};

/// A member's state in `batch_members.state`.
pub const PENDING: i64 = 0;
/// Failed for good.
pub const FAILED: i64 = 1;
/// Succeeded.
pub const SUCCEEDED: i64 = 2;

/// How long the broker lock each callback publish takes lives (a lock queue per callback,
/// `batch:<id>:<success|complete>`): a second publish of the callback within this time is
/// dropped. One constant for every recorder, because the TTL is part of the lock's name.
pub const CALLBACK_LOCK: std::time::Duration = std::time::Duration::from_secs(86_400);

/// Rows per multi-row insert (4 parameters each: well under SQLite's limit).
const INSERT_ROWS: usize = 250;

/// One batch with its counts, for `palermo batches` and the dashboard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BatchRow {
    pub id: String,
    pub description: String,
    #[serde(serialize_with = "time::serialize")]
    pub created_at: i64,
    pub total: i64,
    /// Members not finished yet (total minus succeeded and failed).
    pub pending: i64,
    pub succeeded: i64,
    pub failed: i64,
    #[serde(serialize_with = "time::serialize")]
    pub last_event_at: i64,
    #[serde(serialize_with = "time::serialize_opt")]
    pub finished_at: Option<i64>,
    /// The on_success callback: `none`, `pending`, `firing` or `fired`, and its job id.
    pub success_state: String,
    pub success_job_id: Option<String>,
    /// The on_complete callback, likewise.
    pub complete_state: String,
    pub complete_job_id: Option<String>,
}

/// One batch and its failed members, for `palermo batches show`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BatchDetail {
    #[serde(flatten)]
    pub batch: BatchRow,
    /// The failed members' job ids (the first 1,000).
    pub failed_ids: Vec<String>,
}

/// A callback a recorder won the right to publish.
#[derive(Clone, Debug)]
pub struct Firing {
    /// `success` or `complete`.
    pub kind: &'static str,
    pub callback: Callback,
    pub outcome: Outcome,
}

#[derive(FromRow)]
struct RawRow {
    id: String,
    description: String,
    created_at: i64,
    total: i64,
    succeeded: i64,
    failed: i64,
    last_event_at: i64,
    finished_at: Option<i64>,
    on_success: Option<String>,
    on_complete: Option<String>,
    success_state: String,
    complete_state: String,
}

const SELECT: &str = "SELECT id, description, created_at, total, \
     (SELECT COUNT(*) FROM batch_members m WHERE m.batch_id = b.id AND m.state = 2) AS succeeded, \
     (SELECT COUNT(*) FROM batch_members m WHERE m.batch_id = b.id AND m.state = 1) AS failed, \
     last_event_at, finished_at, on_success, on_complete, success_state, complete_state \
     FROM batches b";

fn job_id(json: &Option<String>) -> Option<String> {
    let callback: Callback = serde_json::from_str(json.as_deref()?).ok()?;
    Some(callback.id.to_string())
}

impl From<RawRow> for BatchRow {
    fn from(r: RawRow) -> Self {
        BatchRow {
            pending: (r.total - r.succeeded - r.failed).max(0),
            success_job_id: job_id(&r.on_success),
            complete_job_id: job_id(&r.on_complete),
            id: r.id,
            description: r.description,
            created_at: r.created_at,
            total: r.total,
            succeeded: r.succeeded,
            failed: r.failed,
            last_event_at: r.last_event_at,
            finished_at: r.finished_at,
            success_state: r.success_state,
            complete_state: r.complete_state,
        }
    }
}

impl Store {
    /// Records one chunk of a batch's opened event.
    pub async fn batch_opened(&self, opened: &Opened, now: i64) -> Result<()> {
        const DOING: &str = "recording a batch";
        let json = |c: &Option<Callback>| c.as_ref().and_then(|c| serde_json::to_string(c).ok());
        let state = |c: &Option<Callback>| if c.is_some() { "pending" } else { "none" };
        let mut tx = self.pool.begin().await.map_err(StoreError::query(DOING))?;
        sqlx::query(
            "INSERT INTO batches (id, description, created_at, total, last_event_at, on_success, \
             on_complete, success_state, complete_state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (id) DO UPDATE SET last_event_at = excluded.last_event_at",
        )
        .bind(opened.batch.to_string())
        .bind(&opened.description)
        .bind(opened.created_at)
        .bind(i64::try_from(opened.total).unwrap_or(i64::MAX))
        .bind(now)
        .bind(json(&opened.on_success))
        .bind(json(&opened.on_complete))
        .bind(state(&opened.on_success))
        .bind(state(&opened.on_complete))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(DOING))?;
        for rows in opened.members.chunks(INSERT_ROWS) {
            let values: Vec<String> = (0..rows.len())
                .map(|i| format!("(${}, ${}, 0, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
                .collect();
            let sql = format!(
                "INSERT INTO batch_members (batch_id, job_id, state, updated_at) VALUES {} \
                 ON CONFLICT (batch_id, job_id) DO NOTHING",
                values.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for member in rows {
                query = query
                    .bind(opened.batch.to_string())
                    .bind(member.to_string())
                    .bind(now);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query(DOING))?;
        }
        tx.commit().await.map_err(StoreError::query(DOING))
    }

    /// Records that `member` of `batch` ended in `state` ([`FAILED`] or [`SUCCEEDED`]): the
    /// row only moves up.
    pub async fn batch_member_done(
        &self,
        batch: Uuid,
        member: &str,
        state: i64,
        at: i64,
    ) -> Result<()> {
        const DOING: &str = "recording a batch member";
        // One transaction: one commit (one fsync) per event.
        let mut tx = self.pool.begin().await.map_err(StoreError::query(DOING))?;
        sqlx::query(
            "INSERT INTO batch_members (batch_id, job_id, state, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (batch_id, job_id) DO UPDATE SET state = excluded.state, \
             updated_at = excluded.updated_at WHERE batch_members.state < excluded.state",
        )
        .bind(batch.to_string())
        .bind(member)
        .bind(state)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(DOING))?;
        sqlx::query("UPDATE batches SET last_event_at = $2 WHERE id = $1 AND last_event_at < $2")
            .bind(batch.to_string())
            .bind(time::now_ms())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(DOING))?;
        tx.commit().await.map_err(StoreError::query(DOING))?;
        Ok(())
    }

    /// Marks `batch` finished if it is, and claims its callbacks that are due: those this
    /// call flipped from `pending` to `firing`, and those left `firing` since before
    /// `stale` (a recorder died before marking them). The caller publishes each, then
    /// calls [`Store::batch_fired`].
    pub async fn batch_due(&self, batch: &str, now: i64, stale: i64) -> Result<Vec<Firing>> {
        const DOING: &str = "checking a batch";
        // The cheap conditions first: while a member is pending, the index on
        // (batch_id, state) answers at once and no member is counted, so a 100,000-member
        // batch does not cost a count per event.
        let run = |sql: &'static str| {
            sqlx::query(sql)
                .bind(batch.to_string())
                .bind(now)
                .bind(stale)
                .execute(&self.pool)
        };
        sqlx::query(
            "UPDATE batches SET finished_at = $2 WHERE id = $1 AND finished_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM batch_members WHERE batch_id = $1 AND state = 0) \
             AND (SELECT COUNT(*) FROM batch_members WHERE batch_id = $1) >= total",
        )
        .bind(batch.to_string())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(DOING))?;
        let mut due = Vec::new();
        let complete = run(
            "UPDATE batches SET complete_state = 'firing', complete_claimed_at = $2 WHERE id = $1 \
             AND ((complete_state = 'pending' AND finished_at IS NOT NULL) \
             OR (complete_state = 'firing' AND complete_claimed_at < $3))",
        )
        .await
        .map_err(StoreError::query(DOING))?;
        if complete.rows_affected() == 1 {
            due.push("complete");
        }
        let success = run(
            "UPDATE batches SET success_state = 'firing', success_claimed_at = $2 WHERE id = $1 \
             AND ((success_state = 'pending' AND finished_at IS NOT NULL \
             AND (SELECT COUNT(*) FROM batch_members WHERE batch_id = $1 AND state = 2) >= total) \
             OR (success_state = 'firing' AND success_claimed_at < $3))",
        )
        .await
        .map_err(StoreError::query(DOING))?;
        if success.rows_affected() == 1 {
            due.push("success");
        }
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let Some(detail) = self.batch(batch).await? else {
            return Ok(Vec::new());
        };
        let Some(raw) = self.raw(batch).await? else {
            return Ok(Vec::new());
        };
        let outcome = Outcome {
            id: Uuid::parse_str(batch).unwrap_or_default(),
            description: detail.batch.description.clone(),
            total: u64::try_from(detail.batch.total).unwrap_or(0),
            succeeded: u64::try_from(detail.batch.succeeded).unwrap_or(0),
            failed: u64::try_from(detail.batch.failed).unwrap_or(0),
            failed_ids: detail
                .failed_ids
                .iter()
                .filter_map(|id| Uuid::parse_str(id).ok())
                .collect(),
        };
        let mut firings = Vec::new();
        for kind in due {
            let json = if kind == "success" {
                &raw.on_success
            } else {
                &raw.on_complete
            };
            match json.as_deref().map(serde_json::from_str::<Callback>) {
                Some(Ok(callback)) => firings.push(Firing {
                    kind,
                    callback,
                    outcome: outcome.clone(),
                }),
                _ => tracing::warn!(batch, kind, "a batch callback cannot be read; not fired"),
            }
        }
        Ok(firings)
    }

    /// Marks a claimed callback fired.
    pub async fn batch_fired(&self, batch: &str, kind: &str, now: i64) -> Result<()> {
        let sql = if kind == "success" {
            "UPDATE batches SET success_state = 'fired', success_fired_at = $2 WHERE id = $1 AND success_state = 'firing'"
        } else {
            "UPDATE batches SET complete_state = 'fired', complete_fired_at = $2 WHERE id = $1 AND complete_state = 'firing'"
        };
        sqlx::query(sql)
            .bind(batch)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query("marking a batch callback fired"))?;
        Ok(())
    }

    /// Batches with a callback still to fire (the recorder's upkeep checks them again).
    pub async fn batches_waiting(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT id FROM batches WHERE success_state IN ('pending', 'firing') \
             OR complete_state IN ('pending', 'firing')",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing open batches"))?;
        rows.iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<Result<_, _>>()
            .map_err(StoreError::query("listing open batches"))
    }

    /// The newest batches first, at most `limit`.
    pub async fn batches(&self, limit: i64) -> Result<Vec<BatchRow>> {
        let sql = format!("{SELECT} ORDER BY created_at DESC, id LIMIT $1");
        let rows: Vec<RawRow> = sqlx::query_as(&sql)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("listing batches"))?;
        Ok(rows.into_iter().map(BatchRow::from).collect())
    }

    /// One batch, or `None` when the store does not know it.
    pub async fn batch(&self, id: &str) -> Result<Option<BatchDetail>> {
        let Some(raw) = self.raw(id).await? else {
            return Ok(None);
        };
        let failed = sqlx::query(
            "SELECT job_id FROM batch_members WHERE batch_id = $1 AND state = 1 ORDER BY job_id LIMIT $2",
        )
        .bind(id)
        .bind(i64::try_from(FAILED_IDS_MAX).unwrap_or(1000))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("reading a batch's failed members"))?;
        let failed_ids = failed
            .iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<Result<_, _>>()
            .map_err(StoreError::query("reading a batch's failed members"))?;
        Ok(Some(BatchDetail {
            batch: raw.into(),
            failed_ids,
        }))
    }

    async fn raw(&self, id: &str) -> Result<Option<RawRow>> {
        let sql = format!("{SELECT} WHERE id = $1");
        sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query("reading a batch"))
    }

    /// Deletes batches finished before `before` whose callbacks are all fired (or none),
    /// with their members; returns how many.
    pub async fn prune_batches(&self, before: i64) -> Result<u64> {
        const DOING: &str = "pruning finished batches";
        const DONE: &str = "finished_at < $1 AND success_state IN ('none', 'fired') \
             AND complete_state IN ('none', 'fired')";
        let mut tx = self.pool.begin().await.map_err(StoreError::query(DOING))?;
        sqlx::query(&format!(
            "DELETE FROM batch_members WHERE batch_id IN (SELECT id FROM batches WHERE {DONE})"
        ))
        .bind(before)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(DOING))?;
        let pruned = sqlx::query(&format!("DELETE FROM batches WHERE {DONE}"))
            .bind(before)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(DOING))?;
        tx.commit().await.map_err(StoreError::query(DOING))?;
        Ok(pruned.rows_affected())
    }
}

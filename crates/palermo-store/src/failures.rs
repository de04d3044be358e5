//! The failures table: one row per message recorded from the failed queue, keyed by its
//! failure id so that recording the same message twice leaves one row.
//!
//! A row is never deleted by people: retrying or removing it changes its status, so the list
//! hides it, a late redelivery of the same message cannot bring it back, and `failed show`
//! can tell a job's earlier failures. Resolved rows are pruned after
//! [`crate::recorder::RecorderConfig::resolved_retention`].

/// One entry of a failure's attempt history: the type the worker writes into the
/// `x-palermo-error-history` header, read back with the same serde shape.
pub use palermo::admin::wire::history::FailedAttempt;
use palermo::admin::wire::{self, chain::ChainHeader};
use serde::Serialize;
use sqlx::{FromRow, Row};

use crate::{
    error::{Result, StoreError},
    time, Store,
};

/// A failure as the recorder reads it off the failed queue.
#[derive(Clone, Debug, PartialEq)]
pub struct NewFailure {
    pub id: String,
    pub job_id: String,
    pub job_name: String,
    pub queue: String,
    pub source_queue: String,
    pub serializer: String,
    pub args_preview: String,
    pub body: Vec<u8>,
    /// The AMQP properties as received, as JSON.
    pub properties: String,
    pub error_kind: String,
    pub error: String,
    pub backtrace: Option<String>,
    pub error_history: Option<String>,
    pub gave_up: Option<String>,
    pub attempt: i64,
    pub max_attempts: Option<i64>,
    pub worker: String,
    pub enqueued_at: Option<i64>,
    pub first_failed_at: i64,
    pub failed_at: i64,
}

/// A recorded failure, as `failed list` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct Failure {
    /// The failure id (`x-palermo-failure-id`): what `show`, `retry` and `remove` take.
    pub id: String,
    /// The job id (AMQP `message_id`); a retried job keeps it.
    pub job_id: String,
    pub job_name: String,
    /// The queue a retry publishes to.
    pub queue: String,
    pub source_queue: String,
    pub serializer: String,
    pub args_preview: String,
    pub error_kind: String,
    pub error: String,
    pub gave_up: Option<String>,
    pub attempt: i64,
    pub max_attempts: Option<i64>,
    pub worker: String,
    #[serde(serialize_with = "time::serialize_opt")]
    pub enqueued_at: Option<i64>,
    #[serde(serialize_with = "time::serialize")]
    pub first_failed_at: i64,
    #[serde(serialize_with = "time::serialize")]
    pub failed_at: i64,
    #[serde(serialize_with = "time::serialize")]
    pub recorded_at: i64,
    /// `failed`, `retried` or `removed`.
    pub status: String,
    #[serde(serialize_with = "time::serialize_opt")]
    pub resolved_at: Option<i64>,
}

/// Everything about one failure, as `failed show` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FailureDetail {
    #[serde(flatten)]
    pub failure: Failure,
    /// The arguments in full, decoded to JSON when the serializer is known.
    pub args: Option<serde_json::Value>,
    /// The body as text when it could not be decoded (invalid bytes replaced).
    pub raw_body: Option<String>,
    pub backtrace: Option<String>,
    /// Earlier failed attempts of this run, from `x-palermo-error-history` (empty when the
    /// header was absent or does not read).
    pub attempts: Vec<FailedAttempt>,
    /// Other failures of the same job id (earlier rounds, before a retry), newest first.
    pub earlier_failures: Vec<Failure>,
    /// Retries and removals of this job's failures, oldest first.
    pub actions: Vec<Action>,
    /// The AMQP properties as received.
    pub properties: serde_json::Value,
    /// The chain this job is a step of, from its `x-palermo-chain` header: the step that
    /// failed and the steps a retry resumes (docs/workflows.md). `None` for a job of no
    /// chain, or a header that does not read.
    pub chain: Option<ChainHeader>,
    #[serde(skip)]
    pub body: Vec<u8>,
}

/// A retry or removal, for the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Action {
    pub failure_id: String,
    /// `retried` or `removed`.
    pub action: String,
    /// Where a retry published the job.
    pub queue: Option<String>,
    #[serde(serialize_with = "time::serialize")]
    pub at: i64,
    pub actor: String,
}

/// The columns [`Failure`] reads, in its order.
pub(crate) const COLUMNS: &str = "id, job_id, job_name, queue, source_queue, serializer, \
    args_preview, error_kind, error, gave_up, attempt, max_attempts, worker, enqueued_at, \
    first_failed_at, failed_at, recorded_at, status, resolved_at";

/// A row of `Store::failure`: the failure and its payload.
#[derive(sqlx::FromRow)]
struct DetailRow {
    #[sqlx(flatten)]
    failure: Failure,
    body: Vec<u8>,
    properties: String,
    backtrace: Option<String>,
    error_history: Option<String>,
}

/// What `--search` looks in, lowercased once here so that the search is a plain
/// case-sensitive scan of one column (several times faster than `ILIKE` on PostgreSQL).
fn search_text(f: &NewFailure) -> String {
    format!("{}\n{}\n{}", f.job_name, f.error, f.args_preview).to_lowercase()
}

impl Store {
    /// Records failures in one transaction; returns how many were new (a failure id already
    /// in the store is skipped, whatever its status).
    pub async fn insert_failures(&self, failures: &[NewFailure]) -> Result<u64> {
        let doing = "recording failures";
        let mut tx = self.pool.begin().await.map_err(StoreError::query(doing))?;
        let recorded_at = time::now_ms();
        let mut inserted = 0;
        // In id order: two recorders inserting overlapping batches (a message redelivered
        // while its first copy is being recorded) then wait for each other, never deadlock.
        let mut sorted: Vec<&NewFailure> = failures.iter().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        for f in sorted {
            let result = sqlx::query(
                "INSERT INTO failures (id, job_id, job_name, queue, source_queue, serializer, \
                 args_preview, error_kind, error, gave_up, attempt, max_attempts, worker, \
                 enqueued_at, first_failed_at, failed_at, recorded_at, search_text, status) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                 $17, $18, 'failed') ON CONFLICT (id) DO NOTHING",
            )
            .bind(&f.id)
            .bind(&f.job_id)
            .bind(&f.job_name)
            .bind(&f.queue)
            .bind(&f.source_queue)
            .bind(&f.serializer)
            .bind(&f.args_preview)
            .bind(&f.error_kind)
            .bind(&f.error)
            .bind(&f.gave_up)
            .bind(f.attempt)
            .bind(f.max_attempts)
            .bind(&f.worker)
            .bind(f.enqueued_at)
            .bind(f.first_failed_at)
            .bind(f.failed_at)
            .bind(recorded_at)
            .bind(search_text(f))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(doing))?;
            if result.rows_affected() == 0 {
                continue;
            }
            sqlx::query(
                "INSERT INTO failure_payloads (failure_id, body, properties, backtrace, \
                 error_history) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&f.id)
            .bind(&f.body)
            .bind(&f.properties)
            .bind(&f.backtrace)
            .bind(&f.error_history)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(doing))?;
            inserted += result.rows_affected();
        }
        tx.commit().await.map_err(StoreError::query(doing))?;
        Ok(inserted)
    }

    /// One failure with its arguments, backtrace and history; `None` if the id is unknown.
    pub async fn failure(&self, id: &str) -> Result<Option<FailureDetail>> {
        let doing = "reading a failure";
        let sql = format!(
            "SELECT {COLUMNS}, body, properties, backtrace, error_history FROM failures \
             JOIN failure_payloads ON failure_id = id WHERE id = $1"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query(doing))?
        else {
            return Ok(None);
        };
        let DetailRow {
            failure,
            body,
            properties,
            backtrace,
            error_history: history,
        } = DetailRow::from_row(&row).map_err(StoreError::query(doing))?;

        let args = palermo::Format::from_name(&failure.serializer)
            .and_then(|format| format.to_json_value(&body).ok());
        let raw_body = args
            .is_none()
            .then(|| String::from_utf8_lossy(&body).into_owned());
        let attempts = history
            .and_then(|h| serde_json::from_str(&h).ok())
            .unwrap_or_default();
        let (earlier_failures, actions) = self.job_history(&failure).await?;
        let chain = serde_json::from_str::<lapin::BasicProperties>(&properties)
            .ok()
            .and_then(|p| ChainHeader::read(wire::headers(&p)).ok().flatten());
        Ok(Some(FailureDetail {
            chain,
            args,
            raw_body,
            backtrace,
            attempts,
            earlier_failures,
            actions,
            properties: serde_json::from_str(&properties).unwrap_or(serde_json::Value::Null),
            body,
            failure,
        }))
    }

    /// The other failures of the same job and every action on this job's failures.
    async fn job_history(&self, failure: &Failure) -> Result<(Vec<Failure>, Vec<Action>)> {
        let doing = "reading a job's history";
        if failure.job_id.is_empty() {
            let actions = self.actions("failure_id = $1", &failure.id).await?;
            return Ok((Vec::new(), actions));
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM failures WHERE job_id = $1 AND id <> $2 \
             ORDER BY failed_at DESC LIMIT 100"
        );
        let rows = sqlx::query(&sql)
            .bind(&failure.job_id)
            .bind(&failure.id)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(doing))?;
        let earlier = rows
            .iter()
            .map(Failure::from_row)
            .collect::<Result<_, _>>()
            .map_err(StoreError::query(doing))?;
        let actions = self.actions("job_id = $1", &failure.job_id).await?;
        Ok((earlier, actions))
    }

    pub(crate) async fn actions(&self, condition: &str, value: &str) -> Result<Vec<Action>> {
        let doing = "reading the retry history";
        let sql = format!(
            "SELECT failure_id, action, queue, at, actor FROM failure_actions WHERE {condition} \
             ORDER BY at, id LIMIT 1000"
        );
        let rows = sqlx::query(&sql)
            .bind(value)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(doing))?;
        rows.iter()
            .map(Action::from_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::query(doing))
    }
}

/// The queue a retry publishes to, and the body and properties (JSON) it republishes.
pub(crate) async fn payload(
    conn: &mut sqlx::AnyConnection,
    id: &str,
) -> Result<Option<(String, Vec<u8>, String)>> {
    let row = sqlx::query(
        "SELECT queue, body, properties FROM failures JOIN failure_payloads ON failure_id = id \
         WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
    .map_err(StoreError::query("reading a failed job"))?;
    row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
        .transpose()
        .map_err(StoreError::query("reading a failed job"))
}

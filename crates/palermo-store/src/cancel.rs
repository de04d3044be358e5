//! Cancelling jobs by id, on the admin side: one call shared by `palermo jobs cancel`, the
//! dashboard's Cancel buttons and `POST /api/jobs/ID/cancel`. It publishes the cancellations
//! on the broker (`palermo::control::cancellations`, confirmed) and records each with its
//! actor in `control_actions` (action `cancel`, target the job id).
//!
//! What the admin side can know about an id decides what it answers ([`Known`]): the store
//! has the failures (a job that failed for good or was removed is finished: refused) and
//! the cancellations it sent (refused as already cancelled, with who and when); the workers'
//! heartbeats list the jobs running now (cancelled: the worker tells the run). A job that
//! waits in a queue or in the delay layout is not visible without taking it from the broker,
//! so an id nobody knows is either such a job or a mistake: the CLI cancels it anyway and
//! says so with its own exit code, the dashboard refuses it unless asked (docs/admin.md,
//! "Control").

use lapin::Connection;
use palermo::{control::cancellations, Deployment};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    error::{Result, StoreError},
    Store,
};

/// What the admin side knew of a job id when asked to cancel it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Known {
    /// Running on this worker (identity) at its last heartbeat: cancelled, the run is told.
    Running { worker: String },
    /// Retried from the failed queue: it waits in its queue again; cancelled.
    Retried,
    /// Nobody knows it: cancelled if `even_unknown`, else refused. A queued or delayed job.
    Unknown,
    /// Finished: it failed for good (or its failure was removed). Refused.
    Finished { failure_status: String },
    /// Cancelled before. Refused.
    AlreadyCancelled { by: String, at: i64 },
}

impl Known {
    /// Whether a cancellation is published for it (with `even_unknown` for unknown ids).
    pub fn cancels(&self, even_unknown: bool) -> bool {
        match self {
            Known::Running { .. } | Known::Retried => true,
            Known::Unknown => even_unknown,
            Known::Finished { .. } | Known::AlreadyCancelled { .. } => false,
        }
    }

    /// One line for people.
    pub fn describe(&self, cancelled: bool) -> String {
        match self {
            Known::Running { worker } => format!("running on {worker}: told to stop"),
            Known::Retried => "retried from the failed queue: it will not run again".into(),
            Known::Unknown if cancelled => format!(
                "not running and not in the failures: if it waits in a queue or the delay \
                 layout it will not run (the cancellation holds {} days); the admin side cannot \
                 see queued jobs, so check the id",
                cancellations::RETENTION.as_secs() / 86_400
            ),
            Known::Unknown => "nobody knows this job: not running and not in the failures (a \
                 queued or delayed job cannot be seen from here; cancel it anyway with \
                 `palermo jobs cancel`)"
                .into(),
            Known::Finished { failure_status } => {
                format!("already finished: its failure is {failure_status}; nothing to cancel")
            }
            Known::AlreadyCancelled { by, at } => {
                format!("already cancelled by {by} at {}", crate::time::short(*at))
            }
        }
    }
}

/// One id's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cancelled {
    pub id: Uuid,
    /// Whether a cancellation was published (and recorded) now.
    pub cancelled: bool,
    #[serde(flatten)]
    pub known: Known,
    pub message: String,
}

/// Cancels the jobs `ids` on behalf of `actor`; each id's answer in order. Unknown ids are
/// cancelled only with `even_unknown`. The broker confirms before anything is recorded.
pub async fn cancel_jobs(
    connection: &Connection,
    deployment: &Deployment,
    store: &Store,
    ids: &[Uuid],
    even_unknown: bool,
    actor: &str,
) -> Result<Vec<Cancelled>> {
    let workers = store.workers().await?;
    let mut answers = Vec::with_capacity(ids.len());
    for &id in ids {
        let known = store.what_is(id, &workers).await?;
        let cancelled = known.cancels(even_unknown);
        let message = known.describe(cancelled);
        answers.push(Cancelled {
            id,
            cancelled,
            known,
            message,
        });
    }
    let chosen: Vec<Uuid> = answers
        .iter()
        .filter(|a| a.cancelled)
        .map(|a| a.id)
        .collect();
    if !chosen.is_empty() {
        cancellations::cancel(connection, deployment, &chosen, actor).await?;
        for id in &chosen {
            store
                .record_control("cancel", &id.to_string(), actor)
                .await?;
        }
    }
    Ok(answers)
}

impl Store {
    /// What the store and the heartbeats (`workers`) know about job `id`.
    async fn what_is(&self, id: Uuid, workers: &[crate::workers::WorkerRow]) -> Result<Known> {
        let text = id.to_string();
        let cancelled: Option<(String, i64)> = sqlx::query_as(
            "SELECT actor, at FROM control_actions WHERE action = 'cancel' AND target = $1 \
             ORDER BY at DESC LIMIT 1",
        )
        .bind(&text)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("reading cancellations"))?;
        if let Some((by, at)) = cancelled {
            return Ok(Known::AlreadyCancelled { by, at });
        }
        let running = workers
            .iter()
            .filter(|w| w.status == "alive")
            .find(|w| w.running.iter().any(|job| job.id == text));
        if let Some(worker) = running {
            return Ok(Known::Running {
                worker: worker.identity.clone(),
            });
        }
        let failure: Option<(String,)> = sqlx::query_as(
            "SELECT status FROM failures WHERE job_id = $1 ORDER BY failed_at DESC LIMIT 1",
        )
        .bind(&text)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("reading the failures of a job"))?;
        Ok(match failure {
            Some((status,)) if status == "retried" => Known::Retried,
            Some((failure_status,)) => Known::Finished { failure_status },
            None => Known::Unknown,
        })
    }
}

//! What the pages and the API show, loaded once per request from the store and the broker.
//! The pages render these structs and the API serializes the same ones, so both always say
//! the same thing.
//!
//! The broker is optional for reading: when it cannot be reached the store's part is still
//! shown, with the broker's error in place of the queue depths.

use palermo_store::{
    limits::LimitRow,
    queues::QueuesReport,
    series::Series,
    stats::Counts,
    time,
    workers::{InFlight, WorkerRow},
};
use serde::Serialize;

use crate::{error::WebError, state::App};

/// Delayed jobs: waiting to be retried, scheduled or snoozed, orphaned (quorum queues keep
/// the delayed jobs whose queue was deleted).
pub(crate) type Delayed = (u64, u64, u64);

/// Queue depths, or why there are none.
#[derive(Debug, Serialize)]
pub(crate) struct Queues {
    #[serde(flatten)]
    pub(crate) report: Option<QueuesReport>,
    /// The broker's error when it could not be asked.
    pub(crate) broker_error: Option<String>,
}

impl Queues {
    pub(crate) async fn load(app: &App) -> Result<Queues, WebError> {
        match app.broker().queues(app.store(), &[]).await {
            Ok(report) => Ok(Queues {
                report: Some(report),
                broker_error: None,
            }),
            Err(palermo_store::StoreError::Broker(e)) => {
                tracing::warn!(error = %e, "queue depths unavailable");
                Ok(Queues {
                    report: None,
                    broker_error: Some(e.to_string()),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Jobs in the delay queues: waiting to be retried, scheduled or snoozed, and orphaned.
    pub(crate) fn delayed(&self) -> Option<Delayed> {
        self.report
            .as_ref()
            .map(|r| (r.retrying, r.scheduled, r.orphaned))
    }

    /// Ready messages in the job queues (the failed queue left out).
    pub(crate) fn queued(&self, failed_queue: &str) -> Option<u64> {
        self.report.as_ref().map(|r| {
            r.queues
                .iter()
                .filter(|q| q.queue != failed_queue)
                .map(|q| u64::from(q.ready.unwrap_or(0)))
                .sum()
        })
    }
}

/// The limits of the alive workers' jobs (docs/limits.md, "Seeing limits").
#[derive(Debug, Serialize)]
pub(crate) struct Limits {
    pub(crate) limits: Vec<LimitRow>,
    /// The broker's error when it could not be asked: the rates' windows are then not
    /// counted (`in_use` null), the rest comes from the store.
    pub(crate) broker_error: Option<String>,
}

impl Limits {
    pub(crate) async fn load(app: &App) -> Result<Limits, WebError> {
        match app.broker().limits(app.store()).await {
            Ok(limits) => Ok(Limits {
                limits,
                broker_error: None,
            }),
            Err(palermo_store::StoreError::Broker(e)) => {
                tracing::warn!(error = %e, "rate windows unavailable");
                Ok(Limits {
                    limits: app.store().limits().await?,
                    broker_error: Some(e.to_string()),
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// A job running now, with the worker that runs it.
#[derive(Debug, Serialize)]
pub(crate) struct Busy {
    pub(crate) worker: String,
    #[serde(flatten)]
    pub(crate) job: InFlight,
    /// How long it has run, ms (as of the worker's last heartbeat's clock and now).
    pub(crate) running_ms: i64,
}

/// Workers and the jobs the alive ones run.
#[derive(Debug, Serialize)]
pub(crate) struct Workers {
    pub(crate) workers: Vec<WorkerRow>,
    pub(crate) busy: Vec<Busy>,
}

impl Workers {
    pub(crate) async fn load(app: &App, now: i64) -> Result<Workers, WebError> {
        let workers = app.store().workers().await?;
        let mut busy: Vec<Busy> = workers
            .iter()
            .filter(|w| w.status == "alive")
            .flat_map(|w| {
                w.running.iter().map(|job| Busy {
                    worker: w.identity.clone(),
                    job: job.clone(),
                    running_ms: (now - job.started_at).max(0),
                })
            })
            .collect();
        busy.sort_by_key(|b| b.job.started_at);
        Ok(Workers { workers, busy })
    }

    pub(crate) fn alive(&self) -> usize {
        self.workers.iter().filter(|w| w.status == "alive").count()
    }
}

/// The overview: counts, charts, queues and workers.
#[derive(Debug, Serialize)]
pub(crate) struct Overview {
    pub(crate) env_name: Option<String>,
    pub(crate) generated_at: String,
    /// Runs finished, all time and in the last hour (failed ones included).
    pub(crate) processed: Counts,
    pub(crate) last_hour: Counts,
    /// Jobs running now on alive workers.
    pub(crate) busy: usize,
    /// Ready messages in the job queues (`null` when the broker is unreachable).
    pub(crate) queued: Option<u64>,
    /// Open failures.
    pub(crate) unresolved_failures: i64,
    pub(crate) workers_alive: usize,
    /// Processed and failed per minute, the last hour.
    pub(crate) per_minute: Series,
    /// Processed and failed per hour, the last days.
    pub(crate) per_hour: Series,
    pub(crate) queues: Queues,
    pub(crate) workers: Workers,
}

impl Overview {
    pub(crate) async fn load(app: &App) -> Result<Overview, WebError> {
        let now = time::now_ms();
        let store = app.store();
        let (stats, per_minute, per_hour, unresolved, workers, queues) = tokio::try_join!(
            async { store.stats(now).await.map_err(WebError::from) },
            async { store.minutes_series(now).await.map_err(WebError::from) },
            app.hours_series(now),
            async {
                store
                    .count_failures(&Default::default())
                    .await
                    .map_err(WebError::from)
            },
            Workers::load(app, now),
            Queues::load(app),
        )?;
        Ok(Overview {
            env_name: app.config().env_name.clone(),
            generated_at: time::rfc3339(now),
            processed: stats.total,
            last_hour: stats.last_hour,
            busy: workers.busy.len(),
            queued: queues.queued(&app.config().deployment.failed_queue),
            unresolved_failures: unresolved,
            workers_alive: workers.alive(),
            per_minute,
            per_hour,
            queues,
            workers,
        })
    }
}

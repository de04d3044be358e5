//! What people can do from the dashboard, shared by the pages' forms and the JSON API: the
//! same store calls as the CLI, with the same rules. Retrying or removing by id is all or
//! nothing: if any id is unknown or was already retried or removed (by anyone), nothing
//! changes and the answer says which and by whom.

use palermo::{control::Command, Enqueued};
use palermo_store::{
    cancel, control,
    error::Rejection,
    prunes::{Prune, Rule},
    schedules, time, Filter, StoreError,
};
use tracing::info;

use crate::{error::WebError, security::auth::Actor, state::App};

/// Retries the failures `ids` (their jobs republished to their queues); returns their ids.
pub(crate) async fn retry(
    app: &App,
    ids: &[String],
    actor: &Actor,
) -> Result<Vec<String>, WebError> {
    let ids = selection(ids)?;
    let result = app.broker().retry(app.store(), &ids, &actor.0).await;
    let retried = explain(result)?;
    info!(failures = retried.len(), actor = %actor.0, "failures retried from the dashboard");
    Ok(retried)
}

/// Removes the failures `ids`; returns how many.
pub(crate) async fn remove(app: &App, ids: &[String], actor: &Actor) -> Result<u64, WebError> {
    let ids = selection(ids)?;
    let removed = explain(app.store().remove(&ids, &actor.0).await)?;
    info!(failures = removed, actor = %actor.0, "failures removed from the dashboard");
    Ok(removed)
}

/// Retries every open failure matching `filter`; returns how many.
pub(crate) async fn retry_all(app: &App, filter: &Filter, actor: &Actor) -> Result<u64, WebError> {
    let retried = app
        .broker()
        .retry_matching(app.store(), filter, &actor.0)
        .await?;
    info!(failures = retried, actor = %actor.0, ?filter, "matching failures retried from the dashboard");
    Ok(retried)
}

/// Removes every open failure matching `filter`; returns how many.
pub(crate) async fn remove_all(app: &App, filter: &Filter, actor: &Actor) -> Result<u64, WebError> {
    let removed = app.store().remove_matching(filter, &actor.0).await?;
    info!(failures = removed, actor = %actor.0, ?filter, "matching failures removed from the dashboard");
    Ok(removed)
}

/// Purges the ready messages of a job queue; returns how many.
pub(crate) async fn purge(app: &App, queue: &str, actor: &Actor) -> Result<u32, WebError> {
    match app.broker().purge(queue).await? {
        Some(purged) => {
            info!(%queue, messages = purged, actor = %actor.0, "queue purged from the dashboard");
            Ok(purged)
        }
        None => Err(WebError::NotFound(format!(
            "the broker has no queue {queue:?}"
        ))),
    }
}

/// Deletes failures (open or resolved) that failed longer ago than `older_than` (`90d`),
/// for good; the prune is recorded with `actor` and shown on the Failed page.
pub(crate) async fn prune(app: &App, older_than: &str, actor: &Actor) -> Result<Prune, WebError> {
    let age = time::parse_duration(older_than)
        .map_err(|e| WebError::BadRequest(format!("older_than: {e}")))?;
    if age.is_zero() {
        return Err(WebError::BadRequest(
            "older_than is 0, which would delete every failure; give an age such as 90d".into(),
        ));
    }
    let now = time::now_ms();
    let before = now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
    let rule = format!("older than {}", time::format_duration(age));
    let prune = app
        .store()
        .prune_failures(Rule::FailedBefore(before), &rule, &actor.0, now, true)
        .await?;
    info!(failures = prune.pruned, %rule, actor = %actor.0, "failures pruned from the dashboard");
    Ok(prune)
}

/// Pauses (`pause`) or resumes the job queue `queue` for every worker, now and after
/// restarts (docs/admin.md, "Control"). A queue neither the broker nor the store knows is a
/// 404; the failed queue is refused (no worker consumes it).
pub(crate) async fn pause(
    app: &App,
    queue: &str,
    pause: bool,
    actor: &Actor,
) -> Result<(), WebError> {
    if queue == app.config().deployment.failed_queue {
        return Err(WebError::BadRequest(
            "the failed queue is not consumed by workers; there is nothing to pause".into(),
        ));
    }
    if app.broker().queue(app.store(), queue).await?.is_none() {
        return Err(WebError::NotFound(format!(
            "no queue {queue:?} on the broker or in the failures"
        )));
    }
    let broker = app.broker();
    let connection = broker.connection().await?;
    let (deployment, store) = (broker.deployment(), app.store());
    control::set_paused(&connection, deployment, store, queue, pause, &actor.0).await?;
    info!(%queue, paused = pause, actor = %actor.0, "queue paused or resumed from the dashboard");
    Ok(())
}

/// Quiets or stops the alive worker `id` (its run id or identity); returns the run ids told.
/// An unknown id is a 404 that lists the alive workers.
pub(crate) async fn command_worker(
    app: &App,
    id: &str,
    command: &Command,
    actor: &Actor,
) -> Result<Vec<String>, WebError> {
    let broker = app.broker();
    let connection = broker.connection().await?;
    let workers = control::Workers::One(id);
    let told = control::command_workers(
        &connection,
        broker.deployment(),
        app.store(),
        workers,
        command,
        &actor.0,
    )
    .await?;
    info!(worker = %id, ?command, actor = %actor.0, "worker command sent from the dashboard");
    Ok(told.into_iter().map(|w| w.id).collect())
}

/// Cancels job `id` (docs/admin.md, "Control"): a running or retried job is cancelled; an id
/// that is not a UUID, or that nobody knows (neither running nor in the failures), is a 404
/// unless `even_unknown` (a queued or delayed job cannot be seen from here); a finished or
/// already cancelled job is a 409 that says so. Nothing is published for a refused id.
pub(crate) async fn cancel_job(
    app: &App,
    id: &str,
    even_unknown: bool,
    actor: &Actor,
) -> Result<cancel::Cancelled, WebError> {
    let job = uuid::Uuid::parse_str(id.trim())
        .map_err(|_| WebError::NotFound(format!("no job {id:?}: a job id is a UUID")))?;
    let broker = app.broker();
    let connection = broker.connection().await?;
    let answers = cancel::cancel_jobs(
        &connection,
        broker.deployment(),
        app.store(),
        &[job],
        even_unknown,
        &actor.0,
    )
    .await?;
    let answer = answers
        .into_iter()
        .next()
        .ok_or_else(|| WebError::Internal("no answer for the job".into()))?;
    if !answer.cancelled {
        return Err(match answer.known {
            cancel::Known::Unknown => WebError::NotFound(format!("job {job}: {}", answer.message)),
            _ => WebError::Stale(vec![Rejection {
                id: job.to_string(),
                reason: answer.message,
            }]),
        });
    }
    info!(job.id = %job, actor = %actor.0, "job cancelled from the dashboard");
    Ok(answer)
}

/// Pauses (`pause`) or resumes schedule `name` for every scheduler, now and after failovers
/// (docs/admin.md, "Control"). A name the active scheduler's table lacks is a 404 that lists
/// the known ones.
pub(crate) async fn pause_schedule(
    app: &App,
    name: &str,
    pause: bool,
    actor: &Actor,
) -> Result<(), WebError> {
    let broker = app.broker();
    let connection = broker.connection().await?;
    let (deployment, store) = (broker.deployment(), app.store());
    schedules::set_paused(&connection, deployment, store, name, pause, &actor.0).await?;
    info!(schedule = %name, paused = pause, actor = %actor.0, "schedule paused or resumed from the dashboard");
    Ok(())
}

/// Enqueues one run of schedule `name`'s job now; its next tick is not moved. A unique job
/// whose lock is held is not enqueued ([`Enqueued::Duplicate`]). Unknown names: a 404.
pub(crate) async fn run_schedule(
    app: &App,
    name: &str,
    actor: &Actor,
) -> Result<Enqueued, WebError> {
    let broker = app.broker();
    let connection = broker.connection().await?;
    let (deployment, store) = (broker.deployment(), app.store());
    let enqueued = schedules::run_now(&connection, deployment, store, name, &actor.0).await?;
    info!(schedule = %name, ?enqueued, actor = %actor.0, "schedule run now from the dashboard");
    Ok(enqueued)
}

/// The ids, without blanks and repeats; none at all is a 400.
fn selection(ids: &[String]) -> Result<Vec<String>, WebError> {
    let mut chosen: Vec<String> = Vec::new();
    for id in ids.iter().map(|id| id.trim()).filter(|id| !id.is_empty()) {
        if !chosen.iter().any(|c| c == id) {
            chosen.push(id.to_string());
        }
    }
    if chosen.is_empty() {
        return Err(WebError::BadRequest(
            "no failure selected: tick at least one".into(),
        ));
    }
    Ok(chosen)
}

/// Turns a refusal into [`WebError::Stale`] (each "already retried/removed" names who did
/// it: the store says).
fn explain<T>(result: Result<T, StoreError>) -> Result<T, WebError> {
    match result {
        Err(StoreError::Rejected(rejections)) => Err(WebError::Stale(rejections)),
        other => Ok(other?),
    }
}

//! The JSON API under `/api`: everything the pages show and every action they offer, with
//! the same store calls and the same rules (docs/dashboard.md has a curl example for each).
//! Actions take JSON bodies, which a cross-site HTML form cannot send; they pass the same
//! cross-origin check and login as the forms.

use axum::{
    extract::{Path, Query, State},
    Json,
};
use palermo::{control::Command, Enqueued};
use palermo_store::{
    facets::Facets, keyset::KeysetPage, metrics::Metrics, prunes::Prune, queues::QueueRow,
    series::Series, stats::Stats, time, FailureDetail,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    actions,
    data::{Limits, Overview, Queues, Workers},
    error::{ApiError, WebError},
    pages::failed::PAGE_SIZE,
    query::FailedQuery,
    security::auth::Actor,
    state::App,
};

type ApiResult<T> = Result<Json<T>, ApiError>;

/// `GET /api/overview`.
pub(crate) async fn overview(State(app): State<App>) -> ApiResult<Overview> {
    Ok(Json(Overview::load(&app).await?))
}

/// `GET /api/stats`: totals, the last hour and per queue and job.
pub(crate) async fn stats(State(app): State<App>) -> ApiResult<Stats> {
    Ok(Json(app.store().stats(time::now_ms()).await?))
}

/// `GET /api/series`: processed and failed per minute (last hour) and per hour (last days).
pub(crate) async fn series(State(app): State<App>) -> ApiResult<Value> {
    let now = time::now_ms();
    let minutes: Series = app.store().minutes_series(now).await?;
    let hours: Series = app.hours_series(now).await?;
    Ok(Json(json!({"per_minute": minutes, "per_hour": hours})))
}

/// `GET /api/queues`.
pub(crate) async fn queues(State(app): State<App>) -> ApiResult<Queues> {
    Ok(Json(Queues::load(&app).await?))
}

/// `GET /api/queues/{name}`.
pub(crate) async fn queue(State(app): State<App>, Path(name): Path<String>) -> ApiResult<QueueRow> {
    let row = app.broker().queue(app.store(), &name).await?;
    Ok(Json(row.ok_or_else(|| {
        WebError::NotFound(format!(
            "no queue {name:?} on the broker or in the failures"
        ))
    })?))
}

/// `POST /api/queues/{name}/purge`: `{"purged": N}`.
pub(crate) async fn purge(
    State(app): State<App>,
    actor: Actor,
    Path(name): Path<String>,
) -> ApiResult<Value> {
    let purged = actions::purge(&app, &name, &actor).await?;
    Ok(Json(json!({"queue": name, "purged": purged})))
}

/// `POST /api/queues/{name}/pause`: `{"queue": NAME, "paused": true}`.
pub(crate) async fn pause(
    State(app): State<App>,
    actor: Actor,
    Path(name): Path<String>,
) -> ApiResult<Value> {
    actions::pause(&app, &name, true, &actor).await?;
    Ok(Json(json!({"queue": name, "paused": true})))
}

/// `POST /api/queues/{name}/resume`: `{"queue": NAME, "paused": false}`.
pub(crate) async fn resume(
    State(app): State<App>,
    actor: Actor,
    Path(name): Path<String>,
) -> ApiResult<Value> {
    actions::pause(&app, &name, false, &actor).await?;
    Ok(Json(json!({"queue": name, "paused": false})))
}

/// `GET /api/schedules`: the active scheduler's table with each schedule's pause state
/// (`null` when no scheduler has been active), and the newest schedule actions.
pub(crate) async fn schedules(State(app): State<App>) -> ApiResult<Value> {
    let connection = app.broker().connection().await?;
    let loaded = palermo_store::schedules::load(&connection, app.broker().deployment()).await?;
    let actions = app.store().schedule_actions().await?;
    Ok(Json(json!({"status": loaded, "actions": actions})))
}

/// `POST /api/schedules/{name}/run`: `{"schedule": NAME, "enqueued": true, "id": ID}`, or
/// `"enqueued": false` with `lock_holder` when the job is unique and its lock is held; 404
/// with the known names for an unknown one.
pub(crate) async fn run_schedule(
    State(app): State<App>,
    actor: Actor,
    Path(name): Path<String>,
) -> ApiResult<Value> {
    Ok(Json(
        match actions::run_schedule(&app, &name, &actor).await? {
            Enqueued::New(id) => json!({"schedule": name, "enqueued": true, "id": id.to_string()}),
            Enqueued::Duplicate(holder) => {
                json!({"schedule": name, "enqueued": false, "lock_holder": holder.to_string()})
            }
        },
    ))
}

/// `POST /api/schedules/{name}/pause`: `{"schedule": NAME, "paused": true}`.
pub(crate) async fn pause_schedule(
    State(app): State<App>,
    actor: Actor,
    Path(name): Path<String>,
) -> ApiResult<Value> {
    actions::pause_schedule(&app, &name, true, &actor).await?;
    Ok(Json(json!({"schedule": name, "paused": true})))
}

/// `POST /api/schedules/{name}/resume`: `{"schedule": NAME, "paused": false}`.
pub(crate) async fn resume_schedule(
    State(app): State<App>,
    actor: Actor,
    Path(name): Path<String>,
) -> ApiResult<Value> {
    actions::pause_schedule(&app, &name, false, &actor).await?;
    Ok(Json(json!({"schedule": name, "paused": false})))
}

/// `POST /api/workers/{id}/quiet`: `{"command": "quiet", "workers": [ID]}`; 404 with the
/// alive workers for an unknown id.
pub(crate) async fn quiet(
    State(app): State<App>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Value> {
    let told = actions::command_worker(&app, &id, &Command::Quiet, &actor).await?;
    Ok(Json(json!({"command": "quiet", "workers": told})))
}

/// `POST /api/workers/{id}/stop`: `{"command": "stop", "workers": [ID]}`.
pub(crate) async fn stop(
    State(app): State<App>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Value> {
    let told = actions::command_worker(&app, &id, &Command::Stop, &actor).await?;
    Ok(Json(json!({"command": "stop", "workers": told})))
}

/// Options of `POST /api/jobs/{id}/cancel`.
#[derive(Debug, Deserialize)]
pub(crate) struct CancelOptions {
    /// Cancel an id nobody knows (a queued or delayed job) instead of a 404. Defaults to
    /// false.
    #[serde(default)]
    even_unknown: bool,
}

/// `POST /api/jobs/{id}/cancel[?even_unknown=true]`: `{"id", "cancelled": true, "status",
/// "message"}`; 404 for an id nobody knows (without `even_unknown`), 409 for a finished or
/// already cancelled job.
pub(crate) async fn cancel(
    State(app): State<App>,
    actor: Actor,
    Path(id): Path<String>,
    Query(options): Query<CancelOptions>,
) -> ApiResult<palermo_store::cancel::Cancelled> {
    let answer = actions::cancel_job(&app, &id, options.even_unknown, &actor).await?;
    Ok(Json(answer))
}

/// `GET /api/workers`: the workers and the jobs running now.
pub(crate) async fn workers(State(app): State<App>) -> ApiResult<Workers> {
    Ok(Json(Workers::load(&app, time::now_ms()).await?))
}

/// `GET /api/limits`: the alive workers' limits, in use and waiting.
pub(crate) async fn limits(State(app): State<App>) -> ApiResult<Limits> {
    Ok(Json(Limits::load(&app).await?))
}

/// Paging of `GET /api/failed`, besides the filter.
#[derive(Debug, Deserialize)]
pub(crate) struct Limit {
    /// Rows, 1 to 1000. Defaults to 25.
    limit: Option<u32>,
}

/// `GET /api/failed?queue=&job=&kind=&q=&since=&until=&after=&before=&limit=`.
pub(crate) async fn failed(
    State(app): State<App>,
    Query(query): Query<FailedQuery>,
    Query(limit): Query<Limit>,
) -> ApiResult<KeysetPage> {
    let filter = query.filter(time::now_ms())?;
    let limit = limit.limit.unwrap_or(PAGE_SIZE).clamp(1, 1000);
    Ok(Json(
        app.store()
            .failures_page(&filter, &query.position()?, limit)
            .await?,
    ))
}

/// `GET /api/failed/facets`: the queues, jobs and error kinds of open failures.
pub(crate) async fn facets(State(app): State<App>) -> ApiResult<Facets> {
    Ok(Json(app.store().failure_facets().await?))
}

/// `GET /api/failed/{id}`.
pub(crate) async fn failure(
    State(app): State<App>,
    Path(id): Path<String>,
) -> ApiResult<FailureDetail> {
    let detail = app.store().failure(&id).await?;
    Ok(Json(detail.ok_or_else(|| {
        WebError::NotFound(format!("no failure has the id {id:?}"))
    })?))
}

/// The body of `POST /api/failed/retry` and `/remove`.
#[derive(Debug, Deserialize)]
pub(crate) struct Ids {
    ids: Vec<String>,
}

/// `POST /api/failed/retry` `{"ids": [...]}`: `{"retried": [...]}`, or 409 and nothing done.
pub(crate) async fn retry(
    State(app): State<App>,
    actor: Actor,
    Json(body): Json<Ids>,
) -> ApiResult<Value> {
    let retried = actions::retry(&app, &body.ids, &actor).await?;
    Ok(Json(json!({"retried": retried})))
}

/// `POST /api/failed/remove` `{"ids": [...]}`: `{"removed": N}`, or 409 and nothing done.
pub(crate) async fn remove(
    State(app): State<App>,
    actor: Actor,
    Json(body): Json<Ids>,
) -> ApiResult<Value> {
    let removed = actions::remove(&app, &body.ids, &actor).await?;
    Ok(Json(json!({"removed": removed})))
}

/// `POST /api/failed/retry-all` with the filter as JSON (`{"queue": "mail"}`; `{}` is all):
/// `{"retried": N}`.
pub(crate) async fn retry_all(
    State(app): State<App>,
    actor: Actor,
    Json(query): Json<FailedQuery>,
) -> ApiResult<Value> {
    let filter = query.filter(time::now_ms())?;
    let retried = actions::retry_all(&app, &filter, &actor).await?;
    Ok(Json(json!({ "retried": retried })))
}

/// `POST /api/failed/remove-all` with the filter as JSON: `{"removed": N}`.
pub(crate) async fn remove_all(
    State(app): State<App>,
    actor: Actor,
    Json(query): Json<FailedQuery>,
) -> ApiResult<Value> {
    let removed = actions::remove_all(&app, &query.filter(time::now_ms())?, &actor).await?;
    Ok(Json(json!({ "removed": removed })))
}

/// `GET /api/metrics`: per job, runs, failures and run-time percentiles over the last hour
/// and day with the last hour's minutes; per queue, the wait to start.
pub(crate) async fn metrics(State(app): State<App>) -> ApiResult<Metrics> {
    Ok(Json(app.store().metrics(time::now_ms()).await?))
}

/// The body of `POST /api/failed/prune`.
#[derive(Debug, Deserialize)]
pub(crate) struct PruneBody {
    /// A duration: `90d`, `12w`.
    older_than: String,
}

/// `POST /api/failed/prune` `{"older_than": "90d"}`: the recorded prune
/// (`{"id", "at", "actor", "rule", "pruned"}`).
pub(crate) async fn prune(
    State(app): State<App>,
    actor: Actor,
    Json(body): Json<PruneBody>,
) -> ApiResult<Prune> {
    Ok(Json(actions::prune(&app, &body.older_than, &actor).await?))
}

/// `GET /api/failed/prunes?limit=`: the latest prunes of failures, newest first.
pub(crate) async fn prunes(
    State(app): State<App>,
    Query(limit): Query<Limit>,
) -> ApiResult<Vec<Prune>> {
    let limit = limit.limit.unwrap_or(PAGE_SIZE).clamp(1, 1000);
    Ok(Json(app.store().prunes(limit).await?))
}

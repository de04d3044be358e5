//! `/metrics` in the Prometheus text format (the `prometheus-client` crate encodes it;
//! nothing is formatted by hand), and `/health`.
//!
//! The numbers live in the store and the broker, not in this process, so each scrape builds
//! a fresh registry from them: counters from the all-time totals (they only grow, as
//! Prometheus expects, except when totals are reset by hand), gauges from the current state.
//! When the broker cannot be reached the queue gauges are left out and `palermo_broker_up`
//! is 0. Run-time and wait histograms: `histograms.rs`.

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use palermo_store::{
    time,
    timings::{By, Kind},
};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

use crate::{
    data::{Limits, Queues, Workers},
    error::WebError,
    histograms::Frozen,
    state::App,
};

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(app): State<App>) -> Result<Response, WebError> {
    let now = time::now_ms();
    let store = app.store();
    let (stats, unresolved, workers, queues, limits, durations, latencies) = tokio::try_join!(
        async { store.stats(now).await.map_err(WebError::from) },
        async { store.failed_per_queue().await.map_err(WebError::from) },
        Workers::load(&app, now),
        Queues::load(&app),
        Limits::load(&app),
        async {
            store
                .timing_buckets(Kind::Duration, By::Job, None)
                .await
                .map_err(WebError::from)
        },
        async {
            store
                .timing_buckets(Kind::Latency, By::Queue, None)
                .await
                .map_err(WebError::from)
        },
    )?;
    let mut registry = Registry::default();
    registry.register_with_unit(
        "palermo_job_duration",
        "Run time of jobs (every outcome), by job name, from the workers' histograms",
        Unit::Seconds,
        Frozen::from_groups("job", &durations),
    );
    registry.register_with_unit(
        "palermo_queue_latency",
        "Wait of jobs from enqueue (or due time) to the start of their run, by queue",
        Unit::Seconds,
        Frozen::from_groups("queue", &latencies),
    );

    let processed = Family::<Labels, Counter>::default();
    let failed = Family::<Labels, Counter>::default();
    for job in &stats.by_job {
        let l = labels(&[("queue", &job.queue), ("job", &job.job)]);
        processed
            .get_or_create(&l)
            .inc_by(count(job.total.processed));
        failed.get_or_create(&l).inc_by(count(job.total.failed));
    }
    registry.register(
        "palermo_jobs_processed",
        "Job runs finished (failed ones included), by queue and job",
        processed,
    );
    registry.register(
        "palermo_jobs_failed",
        "Job runs failed, by queue and job",
        failed,
    );

    let open = Family::<Labels, Gauge>::default();
    for (queue, n) in &unresolved {
        open.get_or_create(&labels(&[("queue", queue)])).set(*n);
    }
    registry.register(
        "palermo_failures_unresolved",
        "Failures recorded and neither retried nor removed, by original queue",
        open,
    );

    let by_status = Family::<Labels, Gauge>::default();
    for status in ["alive", "stopped", "gone"] {
        let n = workers
            .workers
            .iter()
            .filter(|w| w.status == status)
            .count();
        by_status
            .get_or_create(&labels(&[("status", status)]))
            .set(n as i64);
    }
    registry.register(
        "palermo_workers",
        "Workers known from heartbeats, by status",
        by_status,
    );
    let blocked = Gauge::<i64>::default();
    blocked.set(
        workers
            .workers
            .iter()
            .filter(|w| w.status == "alive" && w.blocked.is_some())
            .count() as i64,
    );
    registry.register(
        "palermo_workers_blocked",
        "Alive workers whose connection the broker blocks (a resource alarm), as of their last heartbeat",
        blocked,
    );

    let running = Family::<Labels, Gauge>::default();
    for busy in &workers.busy {
        running
            .get_or_create(&labels(&[("queue", &busy.job.queue)]))
            .inc();
    }
    registry.register(
        "palermo_jobs_running",
        "Jobs running on alive workers (as of their last heartbeat), by queue",
        running,
    );

    register_queues(&mut registry, &queues);
    if queues.report.is_some() {
        register_schedules(&mut registry, &app).await;
    }
    register_limits(&mut registry, &limits);
    let mut body = String::new();
    encode(&mut body, &registry)
        .map_err(|e| WebError::Internal(format!("encoding the metrics failed: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

/// Per schedule: paused or not, and its last run as a Unix timestamp (absent before its
/// first run). Left out when the scheduler's table cannot be read.
async fn register_schedules(registry: &mut Registry, app: &App) {
    let broker = app.broker();
    let loaded = match broker.connection().await {
        Ok(connection) => palermo_store::schedules::load(&connection, broker.deployment()).await,
        Err(e) => Err(e),
    };
    let Ok(Some(loaded)) = loaded else { return };
    let paused = Family::<Labels, Gauge>::default();
    let last_run = Family::<Labels, Gauge>::default();
    for s in &loaded.schedules {
        let l = labels(&[("schedule", &s.row.name)]);
        paused.get_or_create(&l).set(i64::from(s.paused));
        if let Some(ms) = s.row.last_run {
            last_run.get_or_create(&l).set(ms.div_euclid(1000));
        }
    }
    registry.register(
        "palermo_schedule_paused",
        "1 when an operator paused the schedule: its ticks are skipped (docs/admin.md, Control)",
        paused,
    );
    registry.register(
        "palermo_schedule_last_run_timestamp_seconds",
        "When the active scheduler last enqueued the schedule's tick, Unix seconds",
        last_run,
    );
}

/// Per limit and kind (docs/limits.md, "Seeing limits"): its setting (the largest, when
/// workers disagree), in use (left out when not counted: a rate per key, or the broker
/// away) and the jobs sent back to wait during the workers' last heartbeat intervals.
fn register_limits(registry: &mut Registry, limits: &Limits) {
    let setting = Family::<Labels, Gauge>::default();
    let in_use = Family::<Labels, Gauge>::default();
    let waiting = Family::<Labels, Gauge>::default();
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    for row in &limits.limits {
        let l = labels(&[("limit", &row.limit), ("kind", &row.kind)]);
        let value = i64::from(row.value);
        let gauge = setting.get_or_create(&l);
        if gauge.get() < value {
            gauge.set(value);
        }
        if let Some(n) = row.in_use {
            in_use.get_or_create(&l).inc_by(as_i64(n));
        }
        waiting.get_or_create(&l).inc_by(as_i64(row.waiting));
    }
    registry.register(
        "palermo_limit_setting",
        "Each limit's setting: runs at once (concurrency), or starts per window (rate); per key when the limit has one",
        setting,
    );
    registry.register(
        "palermo_limit_in_use",
        "Concurrency: slots held (alive workers' last heartbeats); rate: starts in the current window (from the broker; not counted per key)",
        in_use,
    );
    registry.register(
        "palermo_limit_waiting",
        "Jobs sent back to wait for the limit during the alive workers' last heartbeat intervals",
        waiting,
    );
}

fn register_queues(registry: &mut Registry, queues: &Queues) {
    let up = Gauge::<i64>::default();
    up.set(i64::from(queues.report.is_some()));
    registry.register(
        "palermo_broker_up",
        "1 when the broker answered the queue depth queries",
        up,
    );
    let Some(report) = &queues.report else { return };
    let ready = Family::<Labels, Gauge>::default();
    let consumers = Family::<Labels, Gauge>::default();
    let paused = Family::<Labels, Gauge>::default();
    for q in &report.queues {
        let l = labels(&[("queue", &q.queue)]);
        paused.get_or_create(&l).set(i64::from(q.paused));
    }
    for q in report.queues.iter().filter(|q| q.exists) {
        let l = labels(&[("queue", &q.queue)]);
        ready.get_or_create(&l).set(i64::from(q.ready.unwrap_or(0)));
        consumers
            .get_or_create(&l)
            .set(i64::from(q.consumers.unwrap_or(0)));
    }
    registry.register("palermo_queue_ready", "Messages ready in each queue", ready);
    registry.register(
        "palermo_queue_consumers",
        "Consumers on each queue",
        consumers,
    );
    registry.register(
        "palermo_queue_paused",
        "1 when an operator paused the queue (docs/admin.md, Control)",
        paused,
    );
    let delayed = Family::<Labels, Gauge>::default();
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    delayed
        .get_or_create(&labels(&[("kind", "retry")]))
        .set(as_i64(report.retrying));
    delayed
        .get_or_create(&labels(&[("kind", "scheduled")]))
        .set(as_i64(report.scheduled));
    delayed
        .get_or_create(&labels(&[("kind", "orphaned")]))
        .set(as_i64(report.orphaned));
    registry.register(
        "palermo_jobs_delayed",
        "Jobs waiting in the delay queues: retries, scheduled or snoozed jobs, and orphans (their queue was deleted while they waited; quorum queues only)",
        delayed,
    );
}

/// `GET /health`: 200 `ok` when the database answers, 503 otherwise. The broker is not
/// checked: the dashboard still shows the store's data without it.
pub(crate) async fn health(State(app): State<App>) -> Response {
    match app.store().ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

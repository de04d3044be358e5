//! The overview: counts, throughput charts, the queues and the workers.

use askama::Template;
use axum::{
    extract::State,
    response::{IntoResponse, Response},
};
use palermo_store::time;

use super::{
    render,
    rows::{BusyLine, QueueLine, WorkerLine},
    Base,
};
use crate::{
    chart,
    data::{Delayed, Overview},
    error::WebError,
    links::Root,
    state::App,
    text,
};

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    base: Base,
    cards: Vec<(&'static str, &'static str, String)>,
    minute_chart: String,
    hour_chart: String,
    chart_days: u32,
    queues: Vec<QueueLine>,
    broker_error: Option<String>,
    delayed: Option<Delayed>,
    workers: Vec<WorkerLine>,
    busy: Vec<BusyLine>,
}

/// `GET /`: the overview.
pub(crate) async fn page(State(app): State<App>, root: Root) -> Result<Response, WebError> {
    let data = Overview::load(&app).await?;
    let now = time::now_ms();
    let failed_queue = &app.config().deployment.failed_queue;
    let count = |n: i64| n.to_string();
    let cards = vec![
        ("processed", "Processed", count(data.processed.processed)),
        ("failed", "Failed", count(data.processed.failed)),
        (
            "processed-hour",
            "Processed, last hour",
            count(data.last_hour.processed),
        ),
        (
            "failed-hour",
            "Failed, last hour",
            count(data.last_hour.failed),
        ),
        ("busy", "Busy", data.busy.to_string()),
        (
            "queued",
            "Queued",
            data.queued.map_or_else(|| "–".into(), |n| n.to_string()),
        ),
        (
            "unresolved",
            "Unresolved failures",
            count(data.unresolved_failures),
        ),
        ("workers", "Workers alive", data.workers_alive.to_string()),
    ];
    let page = OverviewPage {
        base: Base::new(&app, &root, "Overview", "overview").live(),
        cards,
        minute_chart: chart::svg(
            &data.per_minute,
            "chart-minutes",
            "Per minute, last hour",
            "%H:%M",
        ),
        hour_chart: chart::svg(
            &data.per_hour,
            "chart-hours",
            "Per hour, last days",
            "%a %H:00",
        ),
        chart_days: crate::state::CHART_DAYS,
        queues: data
            .queues
            .report
            .iter()
            .flat_map(|r| &r.queues)
            .map(|q| QueueLine::new(q, failed_queue))
            .collect(),
        broker_error: data
            .queues
            .broker_error
            .as_deref()
            .map(|e| text::cell(e, 300)),
        delayed: data.queues.delayed(),
        workers: data
            .workers
            .workers
            .iter()
            .map(|w| WorkerLine::new(w, now))
            .collect(),
        busy: data.workers.busy.iter().map(BusyLine::new).collect(),
    };
    Ok(render(&page)?.into_response())
}

//! The Metrics page: per job, runs, failures and run-time percentiles over the last hour and
//! day with a chart of the last hour's minutes; per queue, how long jobs waited to start.
//! `/api/metrics` serializes the same [`palermo_store::metrics::Metrics`].

use askama::Template;
use axum::{
    extract::State,
    response::{IntoResponse, Response},
};
use palermo_store::{
    metrics::{JobMetrics, QueueLatency, Window},
    time,
    timings::Percentiles,
};

use super::{render, Base};
use crate::{
    chart::{self, millis},
    error::WebError,
    links::{encode, Root},
    state::App,
    text,
};

/// One window of a job, as display text.
pub(crate) struct WindowLine {
    pub(crate) runs: i64,
    pub(crate) failed: i64,
    pub(crate) p50: String,
    pub(crate) p95: String,
    pub(crate) p99: String,
}

impl WindowLine {
    fn new(window: &Window) -> WindowLine {
        WindowLine {
            runs: window.runs.processed,
            failed: window.runs.failed,
            p50: millis(window.duration.p50_ms),
            p95: millis(window.duration.p95_ms),
            p99: millis(window.duration.p99_ms),
        }
    }
}

/// A job's row and chart.
pub(crate) struct JobLine {
    pub(crate) name: String,
    /// `failed?job=NAME`, encoded.
    pub(crate) failed_link: String,
    pub(crate) hour: WindowLine,
    pub(crate) day: WindowLine,
    /// The run-time chart (numbers only, see `chart::durations`).
    pub(crate) chart: String,
}

impl JobLine {
    fn new(job: &JobMetrics, index: usize) -> JobLine {
        JobLine {
            name: text::cell(
                if job.job.is_empty() {
                    "(unknown)"
                } else {
                    &job.job
                },
                80,
            ),
            failed_link: format!("failed?job={}", encode(&job.job)),
            hour: WindowLine::new(&job.last_hour),
            day: WindowLine::new(&job.last_day),
            chart: chart::durations(&job.minutes, &format!("chart-job-{index}")),
        }
    }
}

/// A queue's wait percentiles, as display text.
pub(crate) struct LatencyLine {
    pub(crate) queue: String,
    pub(crate) hour: (i64, String, String),
    pub(crate) day: (i64, String, String),
}

impl LatencyLine {
    fn new(queue: &QueueLatency) -> LatencyLine {
        let window = |p: &Percentiles| (p.count, millis(p.p50_ms), millis(p.p95_ms));
        LatencyLine {
            queue: text::cell(&queue.queue, 120),
            hour: window(&queue.last_hour),
            day: window(&queue.last_day),
        }
    }
}

#[derive(Template)]
#[template(path = "metrics.html")]
struct MetricsPage {
    base: Base,
    jobs: Vec<JobLine>,
    queues: Vec<LatencyLine>,
    /// The histograms' bucket bounds, as text (`1ms, 2ms, …, 1h`).
    bounds: String,
}

/// `GET /job-metrics`.
pub(crate) async fn page(State(app): State<App>, root: Root) -> Result<Response, WebError> {
    let metrics = app.store().metrics(time::now_ms()).await?;
    let page = MetricsPage {
        base: Base::new(&app, &root, "Metrics", "metrics").live(),
        jobs: metrics
            .jobs
            .iter()
            .enumerate()
            .map(|(i, job)| JobLine::new(job, i))
            .collect(),
        queues: metrics.queues.iter().map(LatencyLine::new).collect(),
        bounds: metrics
            .bucket_bounds_ms
            .iter()
            .map(|&b| time::format_duration(std::time::Duration::from_millis(b)))
            .collect::<Vec<_>>()
            .join(", "),
    };
    Ok(render(&page)?.into_response())
}

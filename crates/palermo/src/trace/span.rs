//! The `job` span every job runs in, with the enqueuer's trace context as its parent.

use std::future::Future;

use super::{handoff, header::TraceId, TraceContext};

/// The job's span: `job.id`, `job.name`, `queue`, `attempt`, and `trace_id` when the message
/// carried a trace context (then, with the `opentelemetry` feature, its parent too).
///
/// Every field is given at creation, the trace id too: a subscriber such as `fmt` formats a
/// span's fields when it is created, and a later `Span::record` would format again
/// (docs/performance.md: the span is the largest share of Palermo's own work per job).
/// Palermo's own loggers ([`crate::cli`]) format them later, at the first line logged in the
/// span, from the [`super::JobFields`] handed over here.
pub(crate) fn job_span(ctx: &crate::JobContext, parent: Option<&TraceContext>) -> tracing::Span {
    handoff::handing_over(ctx, parent, || new_job_span(ctx, parent))
}

/// [`job_span`] without the hand-over.
fn new_job_span(ctx: &crate::JobContext, parent: Option<&TraceContext>) -> tracing::Span {
    macro_rules! job_span {
        ($trace_id:expr) => {
            tracing::info_span!(
                target: super::TARGET,
                "job",
                job.id = %ctx.id,
                job.name = %ctx.name,
                queue = %ctx.queue,
                attempt = ctx.attempt,
                trace_id = $trace_id,
            )
        };
    }
    let Some(parent) = parent else {
        return job_span!(tracing::field::Empty);
    };
    let span = job_span!(tracing::field::display(TraceId(parent.trace_id)));
    #[cfg(feature = "opentelemetry")]
    super::otel::set_parent(&span, parent);
    span
}

/// Runs a job's future inside its span and, when its message carried one, its trace context.
pub(crate) async fn in_job<F: Future>(
    ctx: &crate::JobContext,
    traceparent: Option<&str>,
    future: F,
) -> F::Output {
    use tracing::Instrument;
    let parent = traceparent.and_then(TraceContext::parse);
    let span = job_span(ctx, parent.as_ref());
    match parent {
        Some(parent) => parent.scope(future.instrument(span)).await,
        None => future.instrument(span).await,
    }
}

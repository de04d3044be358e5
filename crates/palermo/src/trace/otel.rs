//! The bridge to OpenTelemetry through `tracing-opentelemetry` (the `opentelemetry` feature).
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::TraceContext;

pub(super) fn current() -> Option<TraceContext> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let sc = span.span_context();
    sc.is_valid().then(|| TraceContext {
        trace_id: u128::from_be_bytes(sc.trace_id().to_bytes()),
        span_id: u64::from_be_bytes(sc.span_id().to_bytes()),
        sampled: sc.is_sampled(),
    })
}

pub(super) fn set_parent(span: &tracing::Span, parent: &TraceContext) {
    let flags = if parent.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let remote = SpanContext::new(
        TraceId::from_bytes(parent.trace_id.to_be_bytes()),
        SpanId::from_bytes(parent.span_id.to_be_bytes()),
        flags,
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::prelude::*;

    use super::TraceContext;

    #[test]
    fn the_job_span_is_a_child_of_the_header_and_enqueues_inside_it_keep_the_trace() {
        let subscriber = tracing_subscriber::registry().with(tracing_opentelemetry::layer());
        tracing::subscriber::with_default(subscriber, || {
            let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let parent = TraceContext::parse(header).expect("valid");
            let ctx = crate::JobContext::for_test("job", Default::default());
            let span = crate::trace::job_span(&ctx, Some(&parent));
            let _entered = span.enter();
            let current = TraceContext::current().expect("the job span's context");
            assert_eq!(current.trace_id(), parent.trace_id());
            let enqueued = TraceContext::for_enqueue();
            assert_eq!(enqueued.trace_id(), parent.trace_id());
        });
    }
}

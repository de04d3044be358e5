//! The job span's fields formatted at the first line logged inside the span, not when the
//! span is created.
//!
//! `tracing-subscriber`'s `fmt` layer formats a span's fields into a `String` when the span is
//! created, whether or not a line is ever logged in it. Every job runs in a `job` span with
//! five fields (`crate::trace::job_span`), and at the default level `info` a job that
//! succeeds logs nothing ("job done" is `debug`), so that formatting was the largest share of
//! Palermo's own work per job (docs/performance.md). This layer wraps the `fmt` layer of the
//! text (without colours) and JSON loggers: when the job span is created it keeps the field
//! values `job_span` handed over ([`JobFields`]) instead of passing the span on to the `fmt`
//! layer; before a line is written inside the span, or a field recorded on it, it formats
//! them with the same field formatter into the same place (the span's `FormattedFields`). The lines are the same as the `fmt` layer's
//! own (a test below compares them); other layers (OpenTelemetry, an application's) see the
//! span's fields at creation as before.
//!
//! The wrapped layer must log no span events (`FmtSpan::NONE`, the default): it does not see
//! the job span's creation, and a "new" or "close" line is written without going through
//! `on_event`. With colours (a terminal) the
//! `fmt` layer is used as is: its formatted fields remember that they are coloured, which a
//! layer outside `tracing-subscriber` cannot set.

use tracing::{
    span::{Attributes, Id, Record},
    Event, Metadata, Subscriber,
};
use tracing_subscriber::{
    fmt::{FormatFields, FormattedFields},
    layer::Context,
    registry::{LookupSpan, SpanRef},
    Layer,
};

use crate::trace::JobFields;

/// A `fmt` layer (`inner`) whose field formatter is `N`, with the job span's fields deferred.
pub(crate) struct LazyJobFields<L, N> {
    inner: L,
    fields: N,
}

/// The job span's fields, not formatted yet.
struct Pending(JobFields);

impl<L, N> LazyJobFields<L, N> {
    /// Wraps `inner`, a `fmt` layer without colours and without span events whose field
    /// formatter is `fields`.
    pub(crate) fn new(inner: L, fields: N) -> Self {
        crate::trace::defer_job_fields();
        Self { inner, fields }
    }
}

impl<L, N> LazyJobFields<L, N>
where
    N: for<'w> FormatFields<'w> + 'static,
{
    /// Formats `span`'s fields into its `FormattedFields`, if they are still pending.
    fn format_pending<S>(&self, span: &SpanRef<'_, S>)
    where
        S: for<'a> LookupSpan<'a>,
    {
        let mut extensions = span.extensions_mut();
        let Some(Pending(job)) = extensions.remove::<Pending>() else {
            return;
        };
        let mut formatted = FormattedFields::<N>::new(String::new());
        let written = job.with_values(span.metadata().fields(), |values| {
            self.fields
                .format_fields(formatted.as_writer(), Record::new(values))
        });
        if written.is_err() {
            // Shown without fields, as the `fmt` layer shows a span it could not format;
            // but present, since its formatters expect them on every span of a line.
            formatted.fields.clear();
        }
        extensions.replace(formatted);
    }
}

impl<S, L, N> Layer<S> for LazyJobFields<L, N>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(
        &self,
        metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.enabled(metadata, ctx)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(job) = JobFields::take_creating(attrs.metadata()) {
            if let Some(span) = ctx.span(id) {
                // Not passed on: at a span's creation the `fmt` layer (without span events)
                // only formats its fields, which `format_pending` does when needed.
                span.extensions_mut().replace(Pending(job));
                return;
            }
        }
        self.inner.on_new_span(attrs, id, ctx);
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        self.inner.max_level_hint()
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        // The `fmt` layer appends the recorded fields to those formatted so far.
        if let Some(span) = ctx.span(id) {
            self.format_pending(&span);
        }
        self.inner.on_record(id, values, ctx);
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.inner.on_follows_from(id, follows, ctx);
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.event_enabled(event, ctx)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // The spans the line shows are the event's scope.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                self.format_pending(&span);
            }
        }
        self.inner.on_event(event, ctx);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_exit(id, ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.inner.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.inner.on_id_change(old, new, ctx);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        fmt,
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc,
        },
    };

    use tracing_subscriber::{
        field::RecordFields,
        fmt::{
            format::{DefaultFields, JsonFields, Writer},
            FormatFields,
        },
        layer::SubscriberExt as _,
    };

    use super::LazyJobFields;
    use crate::{
        cli::plain_fields::{tests::Log, PlainFields},
        trace::{job_span, TraceContext},
    };

    /// Jobs with and without a trace, silent ones, lines inside and around them, a nested
    /// span, a line with an explicit parent and a field recorded on the job span.
    fn emit() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parent = TraceContext::parse(header).expect("valid");
        let mut ctx = crate::JobContext::for_test("send\x1b[2Jmail", Default::default());
        ctx.id = uuid::Uuid::nil();
        tracing::info!("before any job");
        for trace in [Some(&parent), None] {
            // A job that logs nothing, then one that does.
            drop(job_span(&ctx, trace));
            let job = job_span(&ctx, trace);
            let _entered = job.enter();
            tracing::info!(count = 7u64, "in the job");
            tracing::info_span!("inner", step = 2).in_scope(|| tracing::warn!("nested"));
        }
        let silent = job_span(&ctx, Some(&parent));
        let recorded = job_span(&ctx, None);
        recorded.record("trace_id", "late");
        tracing::info!(parent: &recorded, "explicit parent");
        tracing::info!(parent: &silent, "explicit parent of a job not entered");
        tracing::info!("after the jobs");
    }

    /// What `emit` logs through the layer `layer` makes for a log.
    fn logged<L>(layer: impl FnOnce(Log) -> L) -> String
    where
        L: tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
    {
        let log = Log::default();
        let subscriber = tracing_subscriber::registry().with(layer(log.clone()));
        tracing::subscriber::with_default(subscriber, emit);
        log.text()
    }

    fn text(log: Log) -> impl tracing_subscriber::Layer<tracing_subscriber::Registry> {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .without_time()
            .with_writer(log)
            .fmt_fields(PlainFields)
    }

    fn json(log: Log) -> impl tracing_subscriber::Layer<tracing_subscriber::Registry> {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .without_time()
            .with_writer(log)
    }

    #[test]
    fn text_lines_are_the_fmt_layers_own() {
        let eager = logged(|log| {
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .without_time()
                .with_writer(log)
                .fmt_fields(DefaultFields::new())
        });
        let lazy = logged(|log| LazyJobFields::new(text(log), PlainFields));
        assert_eq!(lazy, eager);
        assert!(eager.contains(
            "job{job.id=00000000-0000-0000-0000-000000000000 job.name=send\x1b[2Jmail queue=test \
             attempt=1 trace_id=4bf92f3577b34da6a3ce929d0e0e4736}:inner{step=2}: "
        ), "{eager}");
        assert!(eager.contains("attempt=1 trace_id=\"late\"}: "), "{eager}");
    }

    /// [`PlainFields`], counting the spans and events it formats.
    #[derive(Clone, Default)]
    struct Counting(Arc<AtomicUsize>);

    impl<'w> FormatFields<'w> for Counting {
        fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
            self.0.fetch_add(1, Ordering::Relaxed);
            PlainFields.format_fields(writer, fields)
        }
    }

    #[test]
    fn a_job_span_without_lines_is_not_formatted() {
        let counting = Counting::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(Log::default())
            .fmt_fields(counting.clone());
        let subscriber =
            tracing_subscriber::registry().with(LazyJobFields::new(layer, counting.clone()));
        let ctx = crate::JobContext::for_test("job", Default::default());
        let formatted = || counting.0.load(Ordering::Relaxed);
        tracing::subscriber::with_default(subscriber, || {
            let job = job_span(&ctx, None);
            drop(job.enter());
            assert_eq!(formatted(), 0);
            let _entered = job.enter();
            tracing::info!("in the job");
            // The span's fields, then the event's.
            assert_eq!(formatted(), 2);
            tracing::info!("again");
            assert_eq!(formatted(), 3);
        });
    }

    #[test]
    fn json_lines_are_the_fmt_layers_own() {
        let eager = logged(json);
        let lazy = logged(|log| LazyJobFields::new(json(log), JsonFields::new()));
        assert_eq!(lazy, eager);
        assert!(
            eager
                .contains(r#""span":{"attempt":1,"job.id":"00000000-0000-0000-0000-000000000000""#),
            "{eager}"
        );
    }
}

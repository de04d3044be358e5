//! The hand-off of the job span's field values to Palermo's own loggers (`cli/`), through a
//! thread-local set while the span is created: those loggers format the fields only when a
//! line is logged inside the span (docs/performance.md), and a `tracing` layer sees a span's
//! values only at its creation. The job span is recognised by its name and target.

use std::{
    cell::Cell,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use uuid::Uuid;

use super::{header::TraceId, TraceContext};

/// Whether a logger formats the job span's fields lazily ([`defer_job_fields`]).
static DEFERRED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The fields of the job span being created on this thread, for the lazy logger.
    static CREATING: Cell<Option<JobFields>> = const { Cell::new(None) };
}

/// Says that a logger takes the job span's fields with [`JobFields::take_creating`] and
/// formats them itself when a line is logged inside the span; from now on [`job_span`]
/// hands them over.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub(crate) fn defer_job_fields() {
    DEFERRED.store(true, Ordering::Relaxed);
}

/// The values of a job span's fields, owned, so that a logger can format them after the
/// span's creation (only if a line is logged inside it) exactly as they were given.
#[derive(Debug)]
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub(crate) struct JobFields {
    id: Uuid,
    name: Arc<str>,
    queue: Arc<str>,
    attempt: u32,
    trace_id: Option<u128>,
}

#[cfg_attr(not(feature = "cli"), allow(dead_code))]
impl JobFields {
    fn of(ctx: &crate::JobContext, parent: Option<&TraceContext>) -> Self {
        Self {
            id: ctx.id,
            name: ctx.name.clone(),
            queue: ctx.queue.clone(),
            attempt: ctx.attempt,
            trace_id: parent.map(|p| p.trace_id),
        }
    }

    /// The fields of the span being created on this thread, if `metadata` is the job span's
    /// and [`defer_job_fields`] was called.
    pub(crate) fn take_creating(metadata: &tracing::Metadata<'_>) -> Option<Self> {
        if metadata.name() != "job" || metadata.target() != super::TARGET {
            return None;
        }
        CREATING.take()
    }

    /// Calls `record` with the values [`job_span`] gave the span, in the same order and of
    /// the same types, for the span's `fields`.
    pub(crate) fn with_values<R>(
        &self,
        fields: &tracing::field::FieldSet,
        record: impl FnOnce(&tracing::field::ValueSet<'_>) -> R,
    ) -> R {
        use tracing::field::{display, Value};
        let (id, name, queue) = (
            display(&self.id),
            display(&*self.name),
            display(&*self.queue),
        );
        let trace_id = self.trace_id.map(|t| display(TraceId(t)));
        let [f_id, f_name, f_queue, f_attempt, f_trace] =
            ["job.id", "job.name", "queue", "attempt", "trace_id"].map(|n| fields.field(n));
        let (Some(f_id), Some(f_name), Some(f_queue), Some(f_attempt), Some(f_trace)) =
            (f_id, f_name, f_queue, f_attempt, f_trace)
        else {
            // Not the job span's fields: nothing of them to record.
            let none: [(&tracing::field::Field, Option<&dyn Value>); 0] = [];
            return record(&fields.value_set(&none));
        };
        let values: [(&tracing::field::Field, Option<&dyn Value>); 5] = [
            (&f_id, Some(&id)),
            (&f_name, Some(&name)),
            (&f_queue, Some(&queue)),
            (&f_attempt, Some(&self.attempt)),
            (&f_trace, trace_id.as_ref().map(|t| t as &dyn Value)),
        ];
        record(&fields.value_set(&values))
    }
}

/// Runs `create` (which creates the job span for `ctx`) with the span's fields handed over to
/// a lazy logger, when one asked for them ([`defer_job_fields`]).
pub(super) fn handing_over(
    ctx: &crate::JobContext,
    parent: Option<&TraceContext>,
    create: impl FnOnce() -> tracing::Span,
) -> tracing::Span {
    let deferred = DEFERRED.load(Ordering::Relaxed);
    if deferred {
        CREATING.set(Some(JobFields::of(ctx, parent)));
    }
    let span = create();
    if deferred {
        // Not taken when the span is disabled.
        CREATING.take();
    }
    span
}

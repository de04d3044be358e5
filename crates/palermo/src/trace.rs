//! Tracing across the queue: the W3C `traceparent` header.
//!
//! A job's run belongs to the request that enqueued it. Every enqueue writes the enqueuing
//! code's trace context into the message's `traceparent` header (the
//! [W3C Trace Context](https://www.w3.org/TR/trace-context/) format, also what other
//! languages' OpenTelemetry libraries write); every job runs inside a `tracing` span named
//! `job` with the fields `job.id`, `job.name`, `queue`, `attempt` and `trace_id`, the trace
//! id from that header. Search the logs for one trace id and you see the request and its jobs.
//!
//! Where the trace context comes from at enqueue:
//!
//! - with the `opentelemetry` feature (off by default), the current `tracing` span's
//!   OpenTelemetry context, when it has one (`tracing-opentelemetry` installed as a layer);
//!   on the worker side the job's span gets that context as its parent, so a tracing backend
//!   draws the job under the request;
//! - otherwise, inside a running job, the job's own trace (a job that enqueues jobs keeps its
//!   trace); or [`TraceContext::scope`], for code that has a trace id of its own;
//! - otherwise, a fresh trace per enqueue.
//!
//! The header is optional: a message without one (from another language's producer) runs
//! the same, in a span without `trace_id`.

use std::{
    cell::Cell,
    fmt,
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use uuid::Uuid;

/// The header the trace context travels in.
pub const TRACEPARENT: &str = "traceparent";

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// A W3C trace context: the trace id, the id of the span that enqueued (the parent) and the
/// sampled flag.
///
/// ```
/// use palermo::trace::TraceContext;
///
/// let parent = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert_eq!(parent.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// let child = parent.child();
/// assert_eq!(child.trace_id(), parent.trace_id());
/// assert_ne!(child.to_string(), parent.to_string());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    sampled: bool,
}

impl TraceContext {
    /// A new trace, sampled.
    pub fn new_root() -> Self {
        Self {
            trace_id: nonzero_u128(),
            span_id: nonzero_u64(),
            sampled: true,
        }
    }

    /// The same trace with a new span id: the context a message enqueued from here carries.
    pub fn child(&self) -> Self {
        Self {
            span_id: nonzero_u64(),
            ..*self
        }
    }

    /// Parses a `traceparent` value (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`);
    /// `None` when it is not one. Versions above 00 are read as 00, as the spec asks.
    pub fn parse(header: &str) -> Option<Self> {
        // Read by byte offset: every job's message carries one, and splitting and
        // `from_str_radix` cost several times more per job (docs/performance.md).
        let b = header.trim().as_bytes();
        let dash = |at: usize| b.get(at) == Some(&b'-');
        if b.len() < 55 || !dash(2) || !dash(35) || !dash(52) {
            return None;
        }
        let version = hex(&b[..2])?;
        // Version 00 has exactly four fields; later versions may append more after a `-`.
        let extended = b.len() > 55;
        if version == 0xff || (extended && (version == 0 || !dash(55))) {
            return None;
        }
        let trace_id = u128::from(hex(&b[3..19])?) << 64 | u128::from(hex(&b[19..35])?);
        let span_id = hex(&b[36..52])?;
        let flags = hex(&b[53..55])?;
        (trace_id != 0 && span_id != 0).then_some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        TraceId(self.trace_id).to_string()
    }

    /// The span id, 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// Whether the trace is sampled (flag 01).
    pub fn sampled(&self) -> bool {
        self.sampled
    }

    /// The trace context of the running code: the current span's (with the `opentelemetry`
    /// feature), else the running job's or the one given to [`TraceContext::scope`].
    pub fn current() -> Option<Self> {
        #[cfg(feature = "opentelemetry")]
        if let Some(context) = otel::current() {
            return Some(context);
        }
        CURRENT.try_with(|c| *c).ok()
    }

    /// Runs `future` with this as the current trace context: the jobs it enqueues carry
    /// this trace id.
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }

    /// The context a message enqueued now carries: a child of [`TraceContext::current`], or
    /// a new trace.
    pub(crate) fn for_enqueue() -> Self {
        Self::current()
            .map(|c| c.child())
            .unwrap_or_else(Self::new_root)
    }
}

/// The `traceparent` header value.
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

/// The value of at most 16 hex digits (either case); `None` if one is not a hex digit.
///
/// By table and without a branch per digit: every job's `traceparent` has 52 of them, and
/// `char::to_digit` cost about 15 instructions each (docs/performance.md).
#[inline(always)]
fn hex(digits: &[u8]) -> Option<u64> {
    let (mut value, mut invalid) = (0u64, 0u8);
    for &digit in digits {
        let nibble = HEX_DIGITS[usize::from(digit)];
        invalid |= nibble;
        value = value << 4 | u64::from(nibble & 0xf);
    }
    (invalid & NOT_HEX == 0).then_some(value)
}

/// Marks a byte that is not a hex digit in [`HEX_DIGITS`].
const NOT_HEX: u8 = 0x80;

/// The value of each byte as a hex digit, or [`NOT_HEX`].
static HEX_DIGITS: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

fn nonzero_u128() -> u128 {
    Uuid::new_v4().as_u128() | 1
}

fn nonzero_u64() -> u64 {
    (Uuid::new_v4().as_u128() as u64) | 1
}

/// The job's span: `job.id`, `job.name`, `queue`, `attempt`, and `trace_id` when the message
/// carried a trace context (then, with the `opentelemetry` feature, its parent too).
///
/// Every field is given at creation, the trace id too: a subscriber such as `fmt` formats a
/// span's fields when it is created, and a later `Span::record` would format again
/// (docs/performance.md: the span is the largest share of Palermo's own work per job).
/// Palermo's own loggers ([`crate::cli`]) format them later, at the first line logged in the
/// span, from the [`JobFields`] handed over here.
pub(crate) fn job_span(ctx: &crate::JobContext, parent: Option<&TraceContext>) -> tracing::Span {
    let deferred = DEFERRED.load(Ordering::Relaxed);
    if deferred {
        CREATING.set(Some(JobFields::of(ctx, parent)));
    }
    let span = new_job_span(ctx, parent);
    if deferred {
        // Not taken when the span is disabled.
        CREATING.take();
    }
    span
}

/// [`job_span`] without the hand-over.
fn new_job_span(ctx: &crate::JobContext, parent: Option<&TraceContext>) -> tracing::Span {
    macro_rules! job_span {
        ($trace_id:expr) => {
            tracing::info_span!(
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
    otel::set_parent(&span, parent);
    span
}

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
        if metadata.name() != "job" || metadata.target() != module_path!() {
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

/// A trace id written as 32 lowercase hex digits, without building a `String`.
struct TraceId(u128);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
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

#[cfg(feature = "opentelemetry")]
mod otel {
    //! The bridge to OpenTelemetry through `tracing-opentelemetry`.
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
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
                let span = super::super::job_span(&ctx, Some(&parent));
                let _entered = span.enter();
                let current = TraceContext::current().expect("the job span's context");
                assert_eq!(current.trace_id(), parent.trace_id());
                let enqueued = TraceContext::for_enqueue();
                assert_eq!(enqueued.trace_id(), parent.trace_id());
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_and_bad_ones_are_refused() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceContext::parse(header).expect("valid");
        assert_eq!(parsed.to_string(), header);
        assert!(parsed.sampled());
        let fresh = TraceContext::new_root();
        assert_eq!(TraceContext::parse(&fresh.to_string()), Some(fresh));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e47z6-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6\u{10}3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba9:2b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736+00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
        // A later version may append fields; upper-case hex is read too.
        let later =
            TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more");
        assert_eq!(
            later.map(|c| c.trace_id()),
            Some("4bf92f3577b34da6a3ce929d0e0e4736".into())
        );
        assert_eq!(later.map(|c| c.sampled()), Some(false));
        let upper =
            TraceContext::parse(" 00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01 ");
        assert_eq!(upper, Some(parsed));
    }

    #[tokio::test]
    async fn enqueues_inside_a_scope_keep_its_trace() {
        let outer = TraceContext::new_root();
        let inner = outer.scope(async { TraceContext::for_enqueue() }).await;
        assert_eq!(inner.trace_id(), outer.trace_id());
        assert_ne!(inner.span_id(), outer.span_id());
        assert_ne!(TraceContext::for_enqueue().trace_id(), outer.trace_id());
    }
}

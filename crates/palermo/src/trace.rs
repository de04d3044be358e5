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
//!
//! Inside: `header.rs` reads and writes the W3C header ([`TraceContext`]), `span.rs` makes
//! the job's span, `handoff.rs` hands the span's fields to Palermo's lazy loggers (`cli/`),
//! and `otel.rs` is the OpenTelemetry bridge.

mod handoff;
mod header;
#[cfg(feature = "opentelemetry")]
mod otel;
mod span;

pub(crate) use handoff::{defer_job_fields, JobFields};
pub use header::{TraceContext, TRACEPARENT};
pub(crate) use span::in_job;
#[cfg(test)]
pub(crate) use span::job_span;

/// The target of the job span (the module it was created in before this one was split): a
/// `RUST_LOG` directive such as `palermo::trace=off` and the lazy loggers name it.
const TARGET: &str = "palermo::trace";

//! Middleware: code that runs around every job, on both sides of the queue.
//!
//! Cross-cutting concerns (metrics, error reporting, a tenant id, audit logs) do not belong
//! in each job. A [`Middleware`] registered with [`crate::WorkerBuilder::middleware`] sees
//! every run start ([`Middleware::before`]) and end with its [`Outcome`]
//! ([`Middleware::after`]); an [`EnqueueMiddleware`] given to
//! [`crate::Client::with_middleware`] sees every enqueue, can add headers to the message or
//! refuse it. Headers set on the client side reach the worker side ([`JobInfo::header`]),
//! which is how a tenant id or a request id travels with a job.
//!
//! The hooks are plain functions, not futures: a worker with no middleware pays nothing per
//! job, and one with middleware pays a virtual call per hook. Work that must wait (sending a
//! report over the network) belongs in a task the hook spawns.

mod enqueue;

use std::{sync::Arc, time::Duration};

use lapin::types::FieldTable;

pub use crate::error::{Outcome, Refused};
pub(crate) use enqueue::EnqueueStack;
pub use enqueue::{Enqueue, EnqueueMiddleware};

use crate::JobContext;

/// Hooks around every job run of a worker. Both have empty defaults: implement the one you
/// need.
///
/// Middlewares run like layers of an onion: `before` in the order they were registered,
/// `after` in the reverse order. They see runs only: a message that cannot run at all
/// (malformed, unknown job, undecodable arguments) goes to the failed queue without them.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use palermo::middleware::{JobInfo, Middleware, Outcome};
///
/// /// Counts failed runs, per job name in a real app.
/// #[derive(Default)]
/// struct CountFailures(AtomicU64);
///
/// impl Middleware for CountFailures {
///     fn after(&self, job: &JobInfo<'_>, outcome: &Outcome, _elapsed: std::time::Duration) {
///         if !outcome.is_ok() {
///             self.0.fetch_add(1, Ordering::Relaxed);
///             tracing::warn!(job = %job.context().name, ?outcome, "job run failed");
///         }
///     }
/// }
///
/// let worker = palermo::Worker::builder(palermo::WorkerConfig::default())
///     .middleware(CountFailures::default());
/// ```
pub trait Middleware: Send + Sync + 'static {
    /// Called just before the job's code runs.
    fn before(&self, job: &JobInfo<'_>) {
        let _ = job;
    }

    /// Called when the run ended, with how it ended and how long it took.
    fn after(&self, job: &JobInfo<'_>, outcome: &Outcome, elapsed: Duration) {
        let _ = (job, outcome, elapsed);
    }
}

/// What a [`Middleware`] knows about the run: the job's context and its message headers.
#[derive(Debug)]
pub struct JobInfo<'a> {
    context: &'a JobContext,
    headers: Option<&'a FieldTable>,
}

impl<'a> JobInfo<'a> {
    pub(crate) fn new(context: &'a JobContext, headers: Option<&'a FieldTable>) -> Self {
        Self { context, headers }
    }

    /// The job's id, name, queue and attempt.
    pub fn context(&self) -> &'a JobContext {
        self.context
    }

    /// A string header of the job's message, such as one an [`EnqueueMiddleware`] set.
    /// `None` when it is missing or not a string.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .and_then(|headers| crate::wire::str_ref(headers, name).ok().flatten())
    }
}

/// Middlewares in registration order, shared by the clones of a worker or client.
pub(crate) struct Layers<T: ?Sized>(Arc<[Arc<T>]>);

impl<T: ?Sized> Clone for Layers<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: ?Sized> Default for Layers<T> {
    fn default() -> Self {
        Self(Arc::from(Vec::new()))
    }
}

impl<T: ?Sized> Layers<T> {
    pub(crate) fn push(&mut self, layer: Arc<T>) {
        let mut all: Vec<_> = self.0.iter().cloned().collect();
        all.push(layer);
        self.0 = all.into();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &Arc<T>> {
        self.0.iter()
    }
}

impl<T: ?Sized> std::fmt::Debug for Layers<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Layers({})", self.0.len())
    }
}

/// The middleware of a worker (or of the test drainer).
pub(crate) type Stack = Layers<dyn Middleware>;

impl Stack {
    pub(crate) fn before(&self, job: &JobInfo<'_>) {
        for m in self.iter() {
            m.before(job);
        }
    }

    pub(crate) fn after(&self, job: &JobInfo<'_>, outcome: &Outcome, elapsed: Duration) {
        for m in self.iter().rev() {
            m.after(job, outcome, elapsed);
        }
    }
}

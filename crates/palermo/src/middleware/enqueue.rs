//! The enqueue side: middleware that sees every message a [`crate::Client`] publishes.

use lapin::{types::FieldTable, BasicProperties};

use crate::{
    error::{Error, Refused},
    trace::{TraceContext, TRACEPARENT},
    wire,
};

/// A hook on every enqueue of a [`crate::Client`] (given with
/// [`crate::Client::with_middleware`]): it can add headers to the message, which the
/// worker's [`super::Middleware`] reads back with [`super::JobInfo::header`], or refuse the
/// enqueue, which then returns [`crate::Error::Refused`] and publishes nothing.
///
/// ```
/// use palermo::middleware::{Enqueue, EnqueueMiddleware, Refused};
///
/// /// Stamps every job with the tenant it was enqueued for.
/// struct Tenant(String);
///
/// impl EnqueueMiddleware for Tenant {
///     fn on_enqueue(&self, job: &mut Enqueue<'_>) -> Result<(), Refused> {
///         if self.0.is_empty() {
///             return Err(Refused::new("no tenant: refusing to enqueue"));
///         }
///         job.set_header("x-tenant", &self.0);
///         Ok(())
///     }
/// }
///
/// let client = palermo::testing::Fake::new().client().with_middleware(Tenant("acme".into()));
/// ```
pub trait EnqueueMiddleware: Send + Sync + 'static {
    /// Called before the message is published; `Err` refuses the enqueue.
    fn on_enqueue(&self, job: &mut Enqueue<'_>) -> Result<(), Refused>;
}

/// The message an [`EnqueueMiddleware`] sees: the job's name and queue, and its headers.
#[derive(Debug)]
pub struct Enqueue<'a> {
    name: &'a str,
    queue: &'a str,
    headers: &'a mut FieldTable,
}

impl<'a> Enqueue<'a> {
    pub(crate) fn new(name: &'a str, queue: &'a str, headers: &'a mut FieldTable) -> Self {
        Self {
            name,
            queue,
            headers,
        }
    }

    /// The job's wire name.
    pub fn name(&self) -> &str {
        self.name
    }

    /// The queue it goes to.
    pub fn queue(&self) -> &str {
        self.queue
    }

    /// A string header already on the message.
    pub fn header(&self, name: &str) -> Option<&str> {
        wire::str_ref(self.headers, name).ok().flatten()
    }

    /// Sets a string header. Names starting with `x-palermo-` are Palermo's own (see
    /// docs/wire-format.md): use another prefix for yours.
    pub fn set_header(&mut self, name: &str, value: &str) {
        wire::put_str(self.headers, name, value);
    }
}

/// A client's enqueue middleware, in the order given.
pub(crate) type EnqueueStack = super::Layers<dyn EnqueueMiddleware>;

impl EnqueueStack {
    /// The properties of a message about to be published to `queue`: its trace context in
    /// `traceparent` (unless it has one), then what each middleware adds; or the refusal.
    pub(crate) fn prepare(
        &self,
        queue: &str,
        properties: BasicProperties,
    ) -> Result<BasicProperties, Error> {
        let mut headers = wire::headers(&properties).clone();
        if wire::str_ref(&headers, TRACEPARENT)
            .ok()
            .flatten()
            .is_none()
        {
            let trace = TraceContext::for_enqueue();
            wire::put_str(&mut headers, TRACEPARENT, &trace.to_string());
        }
        let name = properties.kind().as_ref().map(|k| k.as_str()).unwrap_or("");
        tracing::debug!(
            job.id = ?properties.message_id(), job.name = name, queue,
            traceparent = wire::str_ref(&headers, TRACEPARENT).ok().flatten(),
            "enqueueing"
        );
        let mut job = Enqueue::new(name, queue, &mut headers);
        for middleware in self.iter() {
            middleware
                .on_enqueue(&mut job)
                .map_err(|reason| Error::Refused {
                    job: name.to_string(),
                    queue: queue.to_string(),
                    reason,
                })?;
        }
        Ok(properties.with_headers(headers))
    }
}

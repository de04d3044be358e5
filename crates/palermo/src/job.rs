//! The job trait, a job's context and its outcome.
//!
//! `#[palermo::job]` writes the [`Job`] impl for you: it turns the function's arguments into
//! a struct (`send_email` → `SendEmail`) that is the message body, and calls the function when
//! a worker receives one.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, OnceLock,
    },
    time::Duration,
};

use serde::{de::DeserializeOwned, Serialize};
use uuid::Uuid;

use crate::{serializer::Format, state::StateMap};

/// A job: serializable arguments plus the code that runs them.
///
/// The name is the job's identity on the wire; it must be stable across deploys and unique
/// within one worker binary.
pub trait Job: Serialize + DeserializeOwned + Send + 'static {
    /// The wire name. Defaults to the function's name.
    const NAME: &'static str;
    /// The queue [`crate::Client::enqueue`] sends it to. Defaults to `"default"`.
    const QUEUE: &'static str;
    /// How many times a job may run before it is moved to the failed queue; `None` uses
    /// the worker's default.
    const MAX_ATTEMPTS: Option<u32> = None;
    /// How long one run may take; `None` uses the worker's default.
    const TIMEOUT: Option<Duration> = None;
    /// The delays between runs after failures; `None` uses the worker's default.
    const BACKOFF: Option<crate::retry::Backoff> = None;
    /// The serializer; `None` uses the client's (JSON unless changed).
    const FORMAT: Option<Format> = None;
    /// `Some(ttl)` makes the job unique (`#[job(unique = "30m")]`): while one with the same
    /// name and arguments is queued, delayed or running, every enqueue of another one
    /// ([`crate::Client::enqueue`] and the others) enqueues nothing and returns
    /// [`crate::Enqueued::Duplicate`], for `ttl` at most. Defaults to `None`.
    const UNIQUE: Option<Duration> = None;
    /// The priority a job is published with, 0 (the default) to 255; it takes effect only
    /// on a queue declared with `x-max-priority`. Defaults to `None`.
    const PRIORITY: Option<u8> = None;
    /// Fleet-wide concurrency and rate limits (`#[job(concurrency = 3)]`,
    /// `#[job(rate = "10/s", key = "account_id")]`, docs/limits.md). Defaults to
    /// [`crate::Limit::NONE`].
    const LIMIT: crate::Limit = crate::Limit::NONE;

    /// Runs the job.
    fn run(self, ctx: JobContext) -> impl Future<Output = JobResult> + Send;

    /// A short human-readable rendering of the arguments for headers and views.
    fn preview(&self) -> String {
        crate::wire::preview(&serde_json::to_string(self).unwrap_or_default())
    }
}

/// What a job run returns.
pub type JobResult = Result<(), JobError>;

/// Why a job run did not succeed. Any error converts into it (`?` works on anyhow and std
/// errors); the constructors say what should happen next.
///
/// ```
/// use std::time::Duration;
/// use palermo::JobError;
///
/// #[palermo::job]
/// async fn charge_card(order_id: u64, cents: i64) -> Result<(), JobError> {
///     if cents <= 0 {
///         // Retrying cannot fix a bad argument: straight to the failed queue.
///         return Err(JobError::fail_now(anyhow::anyhow!("order {order_id}: {cents} cents")));
///     }
///     if order_id % 2 == 0 {
///         // Not a failure: run again in 30 s, without using an attempt.
///         return Err(JobError::snooze(Duration::from_secs(30)));
///     }
///     let gateway = std::env::var("GATEWAY_URL")?; // any other error: retried with backoff
///     println!("charging {cents} cents for order {order_id} at {gateway}");
///     Ok(())
/// }
///
/// let error = JobError::snooze(Duration::from_secs(30));
/// assert_eq!(error.snooze_delay(), Some(Duration::from_secs(30)));
/// assert!(JobError::fail_now(anyhow::anyhow!("bad card")).is_fail_now());
/// ```
#[derive(Debug)]
pub struct JobError {
    pub(crate) error: anyhow::Error,
    pub(crate) kind: ErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// An ordinary failure: retried while attempts remain.
    Retry,
    /// Failed for good: straight to the failed queue, whatever attempts remain.
    FailNow,
    /// Not a failure: run again after this delay, without using an attempt.
    Snooze(Duration),
}

impl JobError {
    /// An ordinary failure, retried with backoff while attempts remain.
    pub fn retry(error: impl Into<anyhow::Error>) -> Self {
        Self {
            error: error.into(),
            kind: ErrorKind::Retry,
        }
    }

    /// A failure that retrying cannot fix (a bad argument, say): the job goes to the failed
    /// queue now.
    pub fn fail_now(error: impl Into<anyhow::Error>) -> Self {
        Self {
            error: error.into(),
            kind: ErrorKind::FailNow,
        }
    }

    /// Not a failure: run the job again after `delay` without counting an attempt (the
    /// resource it needs is busy, a rate limit applies...).
    pub fn snooze(delay: Duration) -> Self {
        Self {
            error: anyhow::anyhow!("snoozed for {delay:?}"),
            kind: ErrorKind::Snooze(delay),
        }
    }

    /// The underlying error.
    pub fn error(&self) -> &anyhow::Error {
        &self.error
    }

    /// Whether the job asked not to be retried ([`JobError::fail_now`]).
    pub fn is_fail_now(&self) -> bool {
        self.kind == ErrorKind::FailNow
    }

    /// The delay of a [`JobError::snooze`].
    pub fn snooze_delay(&self) -> Option<Duration> {
        match self.kind {
            ErrorKind::Snooze(delay) => Some(delay),
            _ => None,
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for JobError {
    fn from(error: E) -> Self {
        JobError::retry(error)
    }
}

/// What a running job knows about itself, and the application state the worker was given.
/// Take it as an argument (`ctx: palermo::JobContext`) to use it.
///
/// ```
/// use palermo::{JobContext, JobError};
///
/// #[palermo::job(queue = "video", max_attempts = 5)]
/// async fn transcode(video_id: u64, ctx: JobContext) -> Result<(), JobError> {
///     println!(
///         "job {} ({} on {}): video {video_id}, attempt {} of {}",
///         ctx.id, ctx.name, ctx.queue, ctx.attempt, ctx.max_attempts
///     );
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), palermo::Error> {
/// let fake = palermo::testing::Fake::new();
/// fake.client().enqueue(Transcode { video_id: 3 }).await?;
/// assert!(fake.drain().await[0].outcome.is_ok());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct JobContext {
    /// The job's id (the AMQP `message_id`).
    pub id: Uuid,
    /// The job's wire name.
    pub name: Arc<str>,
    /// The queue it was delivered from.
    pub queue: Arc<str>,
    /// 1 on the first run, 2 on the first retry...
    pub attempt: u32,
    /// The attempt after which it goes to the failed queue.
    pub max_attempts: u32,
    pub(crate) state: Arc<StateMap>,
    /// Raised when an operator cancels the job (docs/admin.md, "Control").
    pub(crate) cancel: Arc<CancelSignal>,
}

impl JobContext {
    /// The state of type `T` the worker was given with [`crate::WorkerBuilder::state`].
    pub fn state<T: Send + Sync + 'static>(&self) -> Result<crate::State<T>, JobError> {
        self.state.get::<T>().map_err(JobError::fail_now)
    }

    /// Whether an operator cancelled this job (`palermo jobs cancel`): it should stop soon.
    /// The worker drops the run after its cancel grace period
    /// ([`crate::WorkerConfig::cancel_grace`]) if it does not return first; either way the
    /// outcome is cancelled, not failed, and the job is not retried.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_raised()
    }

    /// Completes when an operator cancels this job; never, otherwise. Cancel-safe, for
    /// `tokio::select!`:
    ///
    /// ```
    /// use std::time::Duration;
    /// use palermo::{JobContext, JobError};
    ///
    /// #[palermo::job]
    /// async fn export_report(pages: u32, ctx: JobContext) -> Result<(), JobError> {
    ///     for _page in 0..pages {
    ///         tokio::select! {
    ///             () = ctx.cancelled() => return Ok(()), // the outcome is cancelled anyway
    ///             () = tokio::time::sleep(Duration::from_millis(1)) => {} // one page's work
    ///         }
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub async fn cancelled(&self) {
        self.cancel.raised().await
    }

    /// A context for calling a job's function directly, in a unit test of the job.
    pub fn for_test(name: &str, state: StateMap) -> Self {
        Self {
            id: Uuid::new_v4(),
            name: name.into(),
            queue: "test".into(),
            attempt: 1,
            max_attempts: 1,
            state: Arc::new(state),
            cancel: Arc::default(),
        }
    }
}

/// A job's cancellation: raised once, by the worker's cancellation listener (or before the
/// run, for a job cancelled while it waited), with who cancelled it and when.
#[derive(Debug, Default)]
pub(crate) struct CancelSignal {
    raised: AtomicBool,
    notify: tokio::sync::Notify,
    /// `(by, at ms)` of the cancellation.
    by: OnceLock<(String, i64)>,
}

impl CancelSignal {
    /// Raises it (the first call's `by` and `at` are kept) and wakes every waiter.
    pub fn raise(&self, by: &str, at: i64) {
        let _ = self.by.set((by.to_string(), at));
        self.raised.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Who raised it and when.
    pub fn by(&self) -> Option<&(String, i64)> {
        self.by.get()
    }

    /// Completes once raised.
    pub async fn raised(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check: a raise between the two still wakes it.
            notified.as_mut().enable();
            if self.is_raised() {
                return;
            }
            notified.await;
        }
    }
}

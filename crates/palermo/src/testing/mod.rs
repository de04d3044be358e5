//! Testing your jobs without a broker: a fake [`Client`] that records what is enqueued, and
//! runs it on demand ([`Fake::drain`]) or at once ([`Fake::inline`]).
//!
//! The fake client is a [`Client`] (the same type), so the code under test takes a `Client`
//! as usual, as an argument or as `State<Client>`. What it enqueues stays in memory:
//!
//! ```
//! use palermo::{testing::Fake, JobError};
//!
//! #[palermo::job(queue = "mail")]
//! async fn send_email(to: String) -> Result<(), JobError> {
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), palermo::Error> {
//! let fake = Fake::new();
//! let client = fake.client();
//! client.enqueue(SendEmail { to: "ada@example.com".into() }).await?;
//!
//! fake.assert_enqueued::<SendEmail>(|job| job.to == "ada@example.com");
//! assert_eq!(fake.count_of::<SendEmail>(), 1);
//!
//! let runs = fake.drain().await;            // runs it, through the real job function
//! assert!(runs[0].outcome.is_ok());
//! assert_eq!(fake.count(), 0);
//! # Ok(()) }
//! ```
//!
//! [`Fake::drain`] runs the recorded jobs as a worker would: each one decoded from the bytes
//! the client serialized (an argument that does not round-trip fails already at enqueue),
//! with the state given to [`Fake::with_state`] and a [`crate::JobContext`], under its
//! timeout, with panics caught, through the [`Fake::with_middleware`] middleware; the retry
//! decision is the worker's own, with the retry settings given to [`Fake::with_config`]. Retries
//! and snoozes run again at once (the fake keeps a virtual clock instead of waiting), jobs
//! enqueued by jobs run too, and every run's [`Outcome`] is returned.
//!
//! A delayed job ([`crate::Options::delay`], [`crate::Options::at`]) is recorded with its due time
//! ([`Recorded::due`]); `drain` runs jobs in the order of their due times, and does not wait
//! for them.
//!
//! [`Fake::cancel`] cancels a recorded job as `palermo jobs cancel` would: the drain does not
//! run it, and its run says [`Outcome::Cancelled`] (no middleware sees it, as in a worker).

mod drain;

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use lapin::BasicProperties;
use uuid::Uuid;

pub use crate::error::Outcome;
use crate::{
    config::WorkerConfig,
    middleware::{self, Middleware},
    registry::Registry,
    serializer::{Format, SerializeError},
    state::{MissingState, State, StateMap},
    wire::{self, header, JobMeta},
    worker::decide::Retries,
    Client, Error, Job,
};

/// A recorder of enqueued jobs, and the client that enqueues into it. Cheap to clone: the
/// clones share the recording.
///
/// ```
/// use std::time::Duration;
/// use palermo::{testing::Fake, Options};
///
/// #[palermo::job]
/// async fn send_reminder(user_id: u64) -> Result<(), palermo::JobError> {
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), palermo::Error> {
/// let fake = Fake::new();
/// let in_an_hour = Options::new().delay(Duration::from_secs(3600));
/// fake.client().enqueue_with(SendReminder { user_id: 7 }, in_an_hour).await?;
///
/// let job = &fake.jobs()[0];
/// assert!(job.due.is_some()); // recorded with its due time
/// assert_eq!(job.decode::<SendReminder>().expect("decodes").user_id, 7);
/// let runs = fake.drain().await; // runs it now: the fake's clock does not wait
/// assert_eq!(runs.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Fake {
    inner: Arc<Inner>,
}

struct Inner {
    inline: bool,
    pending: Mutex<VecDeque<Recorded>>,
    runs: Mutex<Vec<Run>>,
    state: Mutex<Arc<StateMap>>,
    registry: Mutex<Option<Arc<Registry>>>,
    middleware: Mutex<middleware::Stack>,
    /// The application's retry settings ([`Fake::with_config`]).
    retries: Mutex<Retries>,
    /// The virtual time of the drain, ahead of the real one after retries and snoozes.
    clock: Mutex<SystemTime>,
    /// Jobs [`Fake::cancel`] cancelled: by whom, when (ms).
    cancelled: Mutex<HashMap<Uuid, (String, i64)>>,
}

/// A job the fake client recorded and has not run yet (named apart from
/// [`crate::Enqueued`], what an enqueue returns).
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The job id the enqueue returned.
    pub id: Uuid,
    /// The job's wire name.
    pub name: String,
    /// The queue it was enqueued to.
    pub queue: String,
    /// Its serializer.
    pub format: Format,
    /// The serialized arguments, as the broker would store them.
    pub body: Vec<u8>,
    /// The attempt it runs next (1 unless it is a retry).
    pub attempt: u32,
    /// When it is due: `None` for a job enqueued to run now, the time asked for by
    /// [`crate::Options::delay`] / [`crate::Options::at`], or when a retry or snooze would run.
    pub due: Option<SystemTime>,
    meta: JobMeta,
    properties: BasicProperties,
    /// When the drain runs it (its due time, or when it was enqueued).
    run_at: SystemTime,
}

impl Recorded {
    /// Decodes the arguments as job `J`, as a worker would.
    pub fn decode<J: Job>(&self) -> Result<J, SerializeError> {
        self.format.decode(&self.body)
    }

    /// A string header of the message (an [`crate::middleware::EnqueueMiddleware`]'s, or
    /// `traceparent`).
    pub fn header(&self, name: &str) -> Option<&str> {
        wire::str_ref(wire::headers(&self.properties), name)
            .ok()
            .flatten()
    }
}

/// One run of a job by [`Fake::drain`] or in inline mode.
#[derive(Clone, Debug)]
pub struct Run {
    /// The job id.
    pub id: Uuid,
    /// The job's wire name.
    pub name: String,
    /// The attempt this run was (1 for the first).
    pub attempt: u32,
    /// The virtual time it ran at: a retry's is later by its backoff delay.
    pub at: SystemTime,
    /// How it ended.
    pub outcome: Outcome,
}

impl Default for Fake {
    fn default() -> Self {
        Self::new()
    }
}

impl Fake {
    /// A fake that records jobs until [`Fake::drain`] runs them.
    pub fn new() -> Self {
        Self::with_mode(false)
    }

    /// A fake that runs each job when it is enqueued (Sidekiq's inline mode, Celery's
    /// eager mode), with its retries and snoozes, before the enqueue returns: for
    /// integration tests of the code that enqueues, such as a web handler. Delayed jobs run
    /// at once too. A job that fails for good makes its enqueue return
    /// [`Error::InlineJobFailed`]; [`Fake::runs`] has every run.
    ///
    /// ```
    /// use palermo::{testing::Fake, Client, State};
    ///
    /// #[derive(Default)]
    /// struct Outbox {
    ///     sent: std::sync::Mutex<Vec<String>>,
    /// }
    ///
    /// #[palermo::job]
    /// async fn welcome(user: String, outbox: State<Outbox>) -> anyhow::Result<()> {
    ///     outbox.sent.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(user);
    ///     Ok(())
    /// }
    ///
    /// /// The code under test: a sign-up handler that enqueues a job.
    /// async fn sign_up(client: &Client, user: &str) -> Result<(), palermo::Error> {
    ///     client.enqueue(Welcome { user: user.into() }).await.map(|_| ())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let fake = Fake::inline().with_state(Outbox::default());
    /// sign_up(&fake.client(), "ada").await.expect("the job ran and succeeded");
    /// let outbox = fake.state::<Outbox>().expect("given");
    /// assert_eq!(*outbox.sent.lock().unwrap(), ["ada"]);
    /// # }
    /// ```
    pub fn inline() -> Self {
        Self::with_mode(true)
    }

    fn with_mode(inline: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                inline,
                pending: Mutex::default(),
                runs: Mutex::default(),
                state: Mutex::default(),
                registry: Mutex::default(),
                middleware: Mutex::default(),
                retries: Mutex::new(Retries::of(&WorkerConfig::default())),
                clock: Mutex::new(SystemTime::now()),
                cancelled: Mutex::default(),
            }),
        }
    }

    /// A client that records into this fake. Give it to the code under test.
    pub fn client(&self) -> Client {
        Client::fake(Arc::new(self.clone()))
    }

    /// Gives the jobs a value of type `T` (one per type), which they take as `State<T>`,
    /// as [`crate::WorkerBuilder::state`] does. The fake's own client can be one.
    pub fn with_state<T: Send + Sync + 'static>(self, value: T) -> Self {
        Arc::make_mut(&mut lock(&self.inner.state)).insert(value);
        self
    }

    /// The state of type `T` given with [`Fake::with_state`], the very value jobs see: to
    /// check what they did to it.
    pub fn state<T: Send + Sync + 'static>(&self) -> Result<State<T>, MissingState> {
        lock(&self.inner.state).get::<T>()
    }

    /// Runs these jobs instead of every job linked into the test binary (the default).
    pub fn with_registry(self, registry: Registry) -> Self {
        *lock(&self.inner.registry) = Some(Arc::new(registry));
        self
    }

    /// Runs the jobs with the retry settings of `config`, the one the application's worker
    /// runs with: its `max_attempts`, `backoff` and `job_timeout` apply to every job that
    /// sets none itself, as in the worker. Without it, the fake uses
    /// [`WorkerConfig::default`]'s: 15 attempts, [`crate::Backoff::DEFAULT`], 25 minutes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palermo::{testing::Fake, Backoff, WorkerConfig};
    ///
    /// #[palermo::job]
    /// async fn always_fails() -> anyhow::Result<()> {
    ///     anyhow::bail!("down")
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), palermo::Error> {
    /// let mut config = WorkerConfig::default();
    /// config.max_attempts = 3;
    /// config.backoff = Backoff::exponential(Duration::from_secs(1), Duration::from_secs(60));
    /// let fake = Fake::new().with_config(&config);
    /// fake.client().enqueue(AlwaysFails {}).await?;
    /// assert_eq!(fake.drain().await.len(), 3, "the first run and two retries");
    /// # Ok(()) }
    /// ```
    pub fn with_config(self, config: &WorkerConfig) -> Self {
        *lock(&self.inner.retries) = Retries::of(config);
        self
    }

    /// Runs `middleware` around every run, as [`crate::WorkerBuilder::middleware`] does.
    pub fn with_middleware(self, middleware: impl Middleware) -> Self {
        lock(&self.inner.middleware).push(Arc::new(middleware));
        self
    }

    /// Every job recorded and not run yet, in the order they were enqueued.
    pub fn jobs(&self) -> Vec<Recorded> {
        lock(&self.inner.pending).iter().cloned().collect()
    }

    /// The recorded jobs of type `J`, decoded.
    pub fn enqueued<J: Job>(&self) -> Vec<J> {
        let pending = lock(&self.inner.pending);
        pending
            .iter()
            .filter(|job| job.name == J::NAME)
            .filter_map(|job| job.decode().ok())
            .collect()
    }

    /// How many jobs are recorded and not run yet.
    pub fn count(&self) -> usize {
        lock(&self.inner.pending).len()
    }

    /// How many jobs of type `J` are recorded and not run yet.
    pub fn count_of<J: Job>(&self) -> usize {
        let pending = lock(&self.inner.pending);
        pending.iter().filter(|job| job.name == J::NAME).count()
    }

    /// Cancels job `id` on behalf of `by`, as `palermo jobs cancel` does: when the drain
    /// meets it (or a retry of it), it is not run, and its run's outcome is
    /// [`Outcome::Cancelled`].
    ///
    /// ```
    /// use palermo::{middleware::Outcome, testing::Fake};
    ///
    /// #[palermo::job]
    /// async fn export_report(account: u64) -> Result<(), palermo::JobError> {
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), palermo::Error> {
    /// let fake = Fake::new();
    /// let enqueued = fake.client().enqueue(ExportReport { account: 7 }).await?;
    /// fake.cancel(enqueued.id(), "ada");
    /// let runs = fake.drain().await;
    /// assert!(matches!(&runs[0].outcome, Outcome::Cancelled { by, .. } if by == "ada"));
    /// # Ok(()) }
    /// ```
    pub fn cancel(&self, id: Uuid, by: &str) {
        let at = millis_now();
        lock(&self.inner.cancelled).insert(id, (by.to_string(), at));
    }

    /// Forgets the recorded jobs and runs.
    pub fn clear(&self) {
        lock(&self.inner.pending).clear();
        lock(&self.inner.runs).clear();
    }

    /// Every run so far (by [`Fake::drain`] and in inline mode), in order.
    pub fn runs(&self) -> Vec<Run> {
        lock(&self.inner.runs).clone()
    }

    /// The first recorded job of type `J` that `matches`; panics, listing what was
    /// enqueued, when there is none.
    #[track_caller]
    pub fn assert_enqueued<J: Job>(&self, matches: impl Fn(&J) -> bool) -> J {
        let found = self.enqueued::<J>().into_iter().find(|job| matches(job));
        match found {
            Some(job) => job,
            None => {
                let recorded: Vec<String> = self
                    .jobs()
                    .iter()
                    .map(|job| format!("{} on {}: {}", job.name, job.queue, preview(job)))
                    .collect();
                panic!(
                    "no {} job matching the condition was enqueued; recorded: {recorded:#?}",
                    J::NAME
                )
            }
        }
    }

    /// Records a message the fake client publishes; in inline mode, runs it.
    async fn record_message(
        &self,
        queue: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), Error> {
        let job = recorded(queue, body, properties)?;
        let id = job.id;
        lock(&self.inner.pending).push_back(job);
        if self.inner.inline {
            self.run_inline(id).await?;
        }
        Ok(())
    }
}

/// A message the fake client (or a chain step's success) publishes, as the fake keeps it.
fn recorded(queue: &str, body: &[u8], properties: BasicProperties) -> Result<Recorded, Error> {
    let meta = JobMeta::parse(&properties)
        .map_err(|e| Error::Config(format!("the fake client made a bad message: {e}")))?;
    let due = wire::get_int(wire::headers(&properties), header::NEXT_RUN_AT)
        .ok()
        .flatten()
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64));
    Ok(Recorded {
        id: meta.id,
        name: meta.name.clone(),
        queue: queue.to_string(),
        format: meta.format,
        body: body.to_vec(),
        attempt: meta.attempt,
        due,
        meta,
        run_at: due.unwrap_or_else(SystemTime::now),
        properties,
    })
}

impl crate::client::Recorder for Fake {
    fn record<'a>(
        &'a self,
        queue: &'a str,
        body: &'a [u8],
        properties: BasicProperties,
    ) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>> {
        Box::pin(self.record_message(queue, body, properties))
    }
}

fn preview(job: &Recorded) -> String {
    job.format
        .to_json_value(&job.body)
        .map(|v| wire::preview(&v.to_string()))
        .unwrap_or_else(|e| format!("<{e}>"))
}

fn millis_now() -> i64 {
    wire::now_ms()
}

/// Locks `mutex`; a test that panicked while holding it left its data usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

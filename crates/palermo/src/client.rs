//! Enqueueing jobs: the [`Client`], and how it publishes. Every enqueue (the calls are in
//! `enqueue.rs`, their [`Options`] in `options.rs`) returns only once the broker has
//! confirmed the message is stored: a returned id is a job that exists. A job to run later
//! waits in the [`crate::broker::delay`] queues, from where the broker moves it to its queue when it
//! is due.
//!
//! The client survives broker restarts: an enqueue that finds the connection down reconnects
//! (for up to [`ClientConfig::reconnect_wait`]) and declares its queues again, or returns
//! [`Error::Unavailable`]; it never returns an id the broker has not confirmed.
//!
//! No enqueue hangs: each waits at most the client's publish timeout (10 s by default,
//! [`ClientConfig::publish_timeout`]). While RabbitMQ blocks publishers (a disk or memory
//! alarm) an enqueue waits for the block to lift within that time, then returns
//! [`Error::Blocked`] with the broker's reason, having sent nothing. A publish that comes
//! back unroutable (its queue, or a delay queue, was deleted) declares them again and is
//! sent once more; one the broker nacks (a quorum queue between two leaders) is sent again
//! on a new connection for a few seconds before [`Error::Nacked`] is returned.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use lapin::BasicProperties;

use crate::{
    broker::delay,
    broker::{self, Pending},
    error::Error,
    middleware,
    serializer::Format,
};
pub use config::{ClientConfig, DEFAULT_PUBLISH_TIMEOUT};

mod batch;
mod chain;
mod config;
mod enqueue;
mod options;
mod session;
mod unique;

pub use batch::BatchBuilder;
pub use chain::{Chain, ChainId};
pub use enqueue::Enqueued;
pub use options::Options;
use session::{Reconnect, Sessions};

/// A handle for enqueueing jobs; cheap to clone, safe to share between tasks. It holds one
/// connection and one confirm-mode channel, made again when the broker connection drops.
///
/// A client from [`crate::testing::Fake::client`] stores jobs in memory instead (for tests);
/// it is the same type, so code under test takes a `Client` either way.
///
/// Four calls enqueue: [`Client::enqueue`] (a job, now, on its queue),
/// [`Client::enqueue_with`] (with [`Options`]: another queue, later, a priority, a unique
/// key, headers), [`Client::enqueue_many`] (many jobs, pipelined) and
/// [`Client::enqueue_raw`] (a job given by name and serialized arguments).
///
/// ```no_run
/// use std::time::Duration;
/// use palermo::{Client, Options};
///
/// #[palermo::job(queue = "mail")]
/// async fn send_email(to: String) -> Result<(), palermo::JobError> {
///     Ok(())
/// }
///
/// # async fn app() -> Result<(), palermo::Error> {
/// let client = Client::connect("amqp://guest:guest@127.0.0.1:5672/%2f").await?;
/// let job = SendEmail { to: "ada@example.com".into() };
/// let id = client.enqueue(job.clone()).await?.id();
/// let later = Options::new().delay(Duration::from_secs(3600));
/// client.enqueue_with(job, later).await?;
/// client.close().await?;
/// # let _ = id; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    backend: Backend,
    format: Format,
    reconnect: Reconnect,
    publish_timeout: Duration,
    middleware: middleware::EnqueueStack,
    /// Where batch events go ([`crate::Deployment::batches_queue`]).
    batches_queue: String,
}

/// Where enqueued jobs go.
#[derive(Clone)]
enum Backend {
    Broker(Arc<Sessions>),
    Fake(Arc<dyn Recorder>),
}

/// Where a fake client's messages go instead of the broker: [`crate::testing::Fake`]
/// implements it (the client knows this trait, not the testing module, which uses the client).
pub(crate) trait Recorder: Send + Sync {
    /// Records a message the client publishes to `queue` (in inline mode, runs it).
    fn record<'a>(
        &'a self,
        queue: &'a str,
        body: &'a [u8],
        properties: BasicProperties,
    ) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;
}

/// The pauses before each new send of a nacked enqueue: a quorum queue elects a new leader
/// within a few seconds of losing one, and a nack that lasts longer (a length limit with
/// `reject-publish`) is returned as [`Error::Nacked`] after about 4 s. Within the publish
/// timeout's default.
const NACK_RETRY_PAUSES: [Duration; 5] = [
    Duration::from_millis(0),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// A job given by name with already-serialized arguments, for tools that do not link the
/// job's code (`palermo enqueue`) and for other languages' conventions.
#[derive(Clone, Debug)]
pub struct RawJob {
    /// The wire name.
    pub name: String,
    /// The queue to publish to.
    pub queue: String,
    /// The serializer of `body`.
    pub format: Format,
    /// The serialized arguments.
    pub body: Vec<u8>,
    /// Max attempts, when known.
    pub max_attempts: Option<u32>,
}

impl Client {
    /// Connects to the broker at `url` (`amqp://user:pass@host:port/vhost`), or to one node
    /// that answers of a comma-separated list of such URLs (a cluster): a bad entry is an
    /// error here, and when the node dies the enqueues reconnect to another. The other
    /// settings are the defaults; [`Client::connect_with`] takes them all.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(&ClientConfig::new(crate::Deployment::new(url))).await
    }

    /// Connects with `config`, checked first ([`ClientConfig::validate`]): its deployment
    /// says which broker, and how to declare the queues it publishes to (give every client,
    /// worker and admin tool of a deployment the same one). An unreachable broker is an
    /// error at once here; later, enqueues reconnect.
    pub async fn connect_with(config: &ClientConfig) -> Result<Self, Error> {
        config.validate()?;
        let sessions = Sessions::connect(&config.deployment).await?;
        Ok(Self::with_backend(
            Backend::Broker(Arc::new(sessions)),
            config,
        ))
    }

    /// A client recording into `fake` (see [`crate::testing::Fake::client`]).
    pub(crate) fn fake(fake: Arc<dyn Recorder>) -> Self {
        Self::with_backend(Backend::Fake(fake), &ClientConfig::default())
    }

    fn with_backend(backend: Backend, config: &ClientConfig) -> Self {
        Self {
            backend,
            format: config.format,
            reconnect: Reconnect {
                wait: config.reconnect_wait,
                backoff: config.reconnect,
            },
            publish_timeout: config.publish_timeout,
            middleware: middleware::EnqueueStack::default(),
            batches_queue: config.deployment.batches_queue(),
        }
    }

    /// This client with `middleware` run on every enqueue, after the ones given before (see
    /// [`crate::middleware::EnqueueMiddleware`]).
    pub fn with_middleware(mut self, middleware: impl middleware::EnqueueMiddleware) -> Self {
        self.middleware.push(Arc::new(middleware));
        self
    }

    /// The broker connection, unless this is a fake client.
    fn sessions(&self) -> Option<&Sessions> {
        match &self.backend {
            Backend::Broker(sessions) => Some(sessions),
            Backend::Fake(_) => None,
        }
    }

    /// A client sharing this one's connection whose enqueues wait `wait` for a lost broker
    /// connection to come back, instead of its [`ClientConfig::reconnect_wait`]: zero makes
    /// one quick attempt (a web request that should fail fast), more suits a background
    /// enqueuer that can wait out a broker restart.
    pub fn with_reconnect_wait(mut self, wait: Duration) -> Self {
        self.reconnect.wait = wait;
        self
    }

    /// Closes the connection, waiting for nothing: every enqueue has already been confirmed.
    /// Later enqueues return [`Error::Closed`].
    pub async fn close(&self) -> Result<(), Error> {
        match self.sessions() {
            Some(sessions) => sessions.close().await,
            None => Ok(()),
        }
    }

    /// Publishes and waits for the confirm, within the publish timeout: first for a
    /// resource alarm to clear (nothing is sent while the broker blocks publishers), then
    /// for the broker. A publish that comes back unroutable declares its queues again and is
    /// sent once more; a nacked one is sent again on a new connection, a few times, with a
    /// growing pause ([`NACK_RETRY_PAUSES`]).
    async fn send_confirmed(
        &self,
        queue: &str,
        delayed: Option<(delay::Kind, Duration)>,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), Error> {
        let sent = async {
            if let Some(sessions) = self.sessions() {
                sessions.blocked.unblocked().await;
            }
            let mut pauses = NACK_RETRY_PAUSES.iter();
            let mut declared_again = false;
            loop {
                let error = match self
                    .send(queue, delayed, body, properties.clone())
                    .await?
                    .confirmed()
                    .await
                {
                    Err(e) => e,
                    Ok(()) => return Ok(()),
                };
                // Two refusals are worth another send; each needs its own repair first.
                let Some(sessions) = self.sessions() else {
                    return Err(error);
                };
                match &error {
                    e if e.is_missing_object() && !declared_again => {
                        tracing::warn!(queue, error = %e, "an enqueue came back unroutable; declaring its queues again");
                        sessions.forget(queue);
                        declared_again = true;
                    }
                    // A quorum queue refuses publishes while it has no leader (its node died,
                    // the others have not elected a new one yet), and on RabbitMQ 3.10 a
                    // channel could go on refusing them after the new leader was elected,
                    // while a new connection was accepted at once. A nack stored nothing, so
                    // sending again cannot duplicate.
                    e @ Error::Nacked { .. } => {
                        let Some(pause) = pauses.next() else {
                            return Err(error);
                        };
                        tracing::warn!(queue, error = %e, ?pause, "an enqueue was nacked; sending it again on a new connection");
                        sessions.renew().await;
                        tokio::time::sleep(*pause).await;
                    }
                    _ => return Err(error),
                }
            }
        };
        self.bounded(queue, sent).await
    }

    /// `work` within the publish timeout; past it, an error that names the broker's block
    /// when there is one.
    async fn bounded<T>(
        &self,
        queue: &str,
        work: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let started = tokio::time::Instant::now();
        match tokio::time::timeout(self.publish_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(match self.sessions().and_then(|s| s.blocked.reason()) {
                Some(reason) => Error::Blocked {
                    reason,
                    waited: started.elapsed(),
                },
                None => Error::ConfirmTimeout {
                    queue: queue.to_string(),
                    timeout: started.elapsed(),
                },
            }),
        }
    }

    /// Publishes to `queue` (through the delay queues when `delayed`), declaring what it
    /// needs first, on a usable session. A publish refused because the connection died under
    /// it is sent once more on a new connection; a publish that was sent but whose confirm
    /// was lost is not (the caller gets the error: the job may or may not be stored).
    async fn send(
        &self,
        queue: &str,
        delayed: Option<(delay::Kind, Duration)>,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<Pending, Error> {
        let properties = self.middleware.prepare(queue, properties)?;
        let sessions = match &self.backend {
            Backend::Broker(sessions) => sessions,
            Backend::Fake(fake) => {
                fake.record(queue, body, properties).await?;
                return Ok(Pending::stored(queue));
            }
        };
        let mut retried = false;
        loop {
            let session = sessions.get(&self.reconnect).await?;
            let sent = match delayed {
                None => match session
                    .ensure_declared(queue, sessions.queue_type, sessions.priorities.of(queue))
                    .await
                {
                    Ok(()) => {
                        broker::publish(&session.channel, queue, body, properties.clone()).await
                    }
                    Err(e) => Err(e),
                },
                Some((kind, delay)) => {
                    let channel = &session.channel;
                    let properties = properties.clone();
                    (session.delays)
                        .publish(channel, kind, delay, queue, body, properties)
                        .await
                }
            };
            match sent {
                Err(Error::Broker { .. }) if !retried && !session.usable() => retried = true,
                sent => return sent,
            }
        }
    }
}

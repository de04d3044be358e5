//! The errors the library returns. Binaries turn them into one-line messages with anyhow.

use std::time::Duration;

/// Everything that can go wrong in a client or a worker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The AMQP URL did not parse.
    #[error("invalid AMQP URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// No broker answered at the URL, or it refused the login.
    #[error("cannot connect to RabbitMQ at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: lapin::Error,
    },
    /// A broker operation failed (the connection or channel closed, a declare was refused...).
    #[error("RabbitMQ {operation} failed: {source}")]
    Broker {
        operation: &'static str,
        #[source]
        source: lapin::Error,
    },
    /// The broker answered a publish with a negative confirm: the message is not stored.
    #[error("RabbitMQ refused (nacked) the message published to queue {queue:?}")]
    Nacked { queue: String },
    /// The broker returned the message as unroutable: no queue is bound for it.
    #[error("RabbitMQ could not route the message to queue {queue:?} (is the queue deleted?)")]
    Unroutable { queue: String },
    /// The broker connection is down and did not come back within the client's reconnect
    /// wait ([`crate::Client::with_reconnect_wait`]); nothing was published.
    #[error("RabbitMQ at {url} is unreachable (reconnecting for {waited:?}, {attempts} attempts): {reason}")]
    Unavailable {
        url: String,
        waited: Duration,
        attempts: u32,
        /// The last attempt's error.
        reason: String,
    },
    /// A reconnect attempt (connect and declare) got no answer in time.
    #[error("RabbitMQ at {url} did not answer within {timeout:?}")]
    ConnectTimeout { url: String, timeout: Duration },
    /// The client was closed with [`crate::Client::close`].
    #[error("the client is closed")]
    Closed,
    /// The broker did not confirm a publish in time.
    #[error("RabbitMQ did not confirm the publish to queue {queue:?} within {timeout:?}")]
    ConfirmTimeout { queue: String, timeout: Duration },
    /// The job's arguments could not be serialized.
    #[error("cannot serialize the arguments of job {job:?} with {format}: {reason}")]
    Serialize {
        job: String,
        format: &'static str,
        reason: String,
    },
    /// The configuration is invalid; the message says what to change.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A job was to be delayed longer than the delay queues can hold.
    #[error("cannot delay a job by {requested:?}: the delay queues hold at most {max:?} (about 388 days)")]
    DelayTooLong { requested: Duration, max: Duration },
    /// Two jobs linked into one binary share a wire name.
    #[error("two jobs are named {name:?}: {first} and {second}; give one of them #[job(name = \"...\")]")]
    DuplicateJobName {
        name: String,
        first: String,
        second: String,
    },
}

impl Error {
    pub(crate) fn broker(operation: &'static str) -> impl FnOnce(lapin::Error) -> Error {
        move |source| Error::Broker { operation, source }
    }
}

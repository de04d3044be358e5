//! The errors the library returns. Binaries turn them into one-line messages with anyhow.

use std::time::Duration;

mod outcome;

pub use outcome::Outcome;

/// Everything that can go wrong in a client or a worker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The AMQP URL, or an entry of the comma-separated list, did not parse.
    #[error("invalid AMQP URL {url:?}{}: {reason}", in_list(*.position))]
    InvalidUrl {
        /// The URL as given, without its password.
        url: String,
        /// What is wrong with it.
        reason: String,
        /// In a list of several addresses: its position (from 1) and the list's length.
        position: Option<(usize, usize)>,
    },
    /// No broker answered at the URL, or it refused the login.
    #[error("cannot connect to RabbitMQ at {url}: {source}")]
    Connect {
        /// The URL, without its password.
        url: String,
        /// lapin's error.
        #[source]
        source: lapin::Error,
    },
    /// None of the addresses of a list answered; each one's error, in the order tried.
    #[error("no RabbitMQ node answered ({} addresses tried): {}", .failures.len(), joined(.failures))]
    NoNodeAnswered {
        /// Each address's error.
        failures: Vec<Error>,
    },
    /// A broker operation failed (the connection or channel closed, a declare was refused...).
    #[error("RabbitMQ {operation} failed: {source}")]
    Broker {
        /// The AMQP method, e.g. `queue.declare`.
        operation: &'static str,
        /// lapin's error.
        #[source]
        source: lapin::Error,
    },
    /// The broker refused an operation for lack of a permission (`ACCESS_REFUSED`): the
    /// user's configure, write or read regex in the vhost does not match the queue or
    /// exchange. Retrying cannot help until the permissions change; docs/scaling.md lists
    /// the permissions each side needs.
    #[error(
        "the broker refused access: {} (ACCESS_REFUSED during {operation}): check the user's permissions (docs/scaling.md, \"Least privilege on the broker\")",
        refusal.describe()
    )]
    AccessRefused {
        /// The AMQP method, e.g. `basic.consume`.
        operation: &'static str,
        /// What the broker said was refused (boxed: errors stay small).
        refusal: Box<Refusal>,
        /// lapin's error.
        #[source]
        source: lapin::Error,
    },
    /// The broker answered a publish with a negative confirm: the message is not stored.
    #[error("RabbitMQ refused (nacked) the message published to queue {queue:?}")]
    Nacked {
        /// The queue (or exchange) published to.
        queue: String,
    },
    /// The broker returned the message as unroutable: no queue is bound for it.
    #[error("RabbitMQ could not route the message to queue {queue:?} (is the queue deleted?)")]
    Unroutable {
        /// The queue published to.
        queue: String,
    },
    /// The broker connection is down and did not come back within the client's reconnect
    /// wait ([`crate::ClientConfig::reconnect_wait`]); nothing was published.
    #[error("RabbitMQ at {url} is unreachable (reconnecting for {waited:?}, {attempts} attempts): {reason}")]
    Unavailable {
        /// The URL, without its password.
        url: String,
        /// How long the enqueue waited.
        waited: Duration,
        /// Reconnect attempts made.
        attempts: u32,
        /// The last attempt's error.
        reason: String,
    },
    /// A connection attempt got no answer in time.
    #[error("RabbitMQ at {url} did not answer within {timeout:?}")]
    ConnectTimeout {
        /// The URL, without its password.
        url: String,
        /// How long the attempt waited.
        timeout: Duration,
    },
    /// The client was closed with [`crate::Client::close`].
    #[error("the client is closed")]
    Closed,
    /// The broker did not confirm a publish in time.
    #[error("RabbitMQ did not confirm the publish to queue {queue:?} within {timeout:?}")]
    ConfirmTimeout {
        /// The queue published to.
        queue: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// RabbitMQ blocks publishers (a disk or memory alarm) and did not lift the block within
    /// the client's publish timeout ([`crate::ClientConfig::publish_timeout`]). The job was
    /// not confirmed. RabbitMQ tells a connection it is blocked only when it publishes, so
    /// the first job a connection publishes into an alarm is sent, and stored once the alarm
    /// clears; the ones after it (the block known) are not sent at all.
    #[error(
        "RabbitMQ is blocking publishers: {reason} (waited {waited:?}; the job was not confirmed)"
    )]
    Blocked {
        /// The broker's reason, e.g. `low on disk`.
        reason: String,
        /// How long the enqueue waited.
        waited: Duration,
    },
    /// The job's arguments could not be serialized.
    #[error("cannot serialize the arguments of job {job:?}: {source}")]
    Serialize {
        /// The job's wire name.
        job: String,
        /// The serializer's error.
        #[source]
        source: SerializeError,
    },
    /// The configuration is invalid; the message says what to change.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A queue, exchange or routing key name that RabbitMQ or Palermo refuses.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// A worker slot's task panicked (a bug in Palermo: jobs' panics are caught).
    #[error("a worker slot panicked: {0}")]
    SlotPanicked(#[source] tokio::task::JoinError),
    /// The broker cancelled a consumer (its queue was deleted, a cluster node went away).
    #[error("the broker cancelled the consumer on {queue:?}")]
    ConsumerCancelled {
        /// The queue it consumed.
        queue: String,
    },
    /// A worker event could not be written as JSON.
    #[error("cannot serialize a worker event: {0}")]
    EventSerialize(#[source] serde_json::Error),
    /// A job was to be delayed longer than the delay queues can hold.
    #[error("cannot delay a job by {requested:?}: the delay queues hold at most {max:?} (about 388 days)")]
    DelayTooLong {
        /// The delay asked for.
        requested: Duration,
        /// The longest delay possible.
        max: Duration,
    },
    /// Two jobs linked into one binary share a wire name.
    #[error("two jobs are named {name:?}: {first} and {second}; give one of them #[job(name = \"...\")]")]
    DuplicateJobName {
        /// The shared wire name.
        name: String,
        /// Where the first is defined (`file:line`).
        first: String,
        /// Where the second is defined.
        second: String,
    },
    /// An [`crate::middleware::EnqueueMiddleware`] refused the enqueue; nothing was published.
    #[error("enqueue of job {job:?} to queue {queue:?} refused: {reason}")]
    Refused {
        /// The job's wire name.
        job: String,
        /// The queue it was going to.
        queue: String,
        /// The middleware's reason.
        reason: Refused,
    },
    /// A chain's header (its later steps and their arguments) is too large for one AMQP
    /// frame; nothing was enqueued (docs/workflows.md).
    #[error("the chain's header would be {bytes} bytes; the limit is {max} (pass large arguments by reference: an id, a URL)")]
    ChainTooLarge {
        /// The header's length, in bytes.
        bytes: usize,
        /// [`crate::admin::wire::chain::MAX_BYTES`].
        max: usize,
    },
    /// In [`crate::testing::Fake::inline`] mode, the job enqueued ran and failed for good.
    #[error("job {job:?} ran inline and failed: {outcome:?}")]
    InlineJobFailed {
        /// The job's wire name.
        job: String,
        /// How its last run ended.
        outcome: Outcome,
    },
}

/// Why an [`crate::middleware::EnqueueMiddleware`] refused an enqueue
/// ([`Error::Refused`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl Refused {
    /// A refusal with this reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// What an `ACCESS_REFUSED` reply names, read from RabbitMQ's text (`access to queue 'mail'
/// in vhost 'shop' refused for user 'web'`; newer brokers put the permission first).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusal {
    /// The permission missing: `configure`, `write` or `read` (two when the operation needs
    /// both and the broker did not say which), from the broker's text or else from the
    /// operation and the object refused.
    pub permission: Option<String>,
    /// The object and its vhost, e.g. `queue 'mail' in vhost 'shop'`, when the broker named it.
    pub resource: Option<String>,
    /// The user refused, when the broker named it.
    pub user: Option<String>,
    /// The broker's reply text as received.
    pub reply: String,
}

impl Refusal {
    /// Reads RabbitMQ's reply to `operation` (e.g. `basic.consume`); what does not parse
    /// stays in [`Refusal::reply`] only.
    pub fn parse(operation: &str, reply: &str) -> Refusal {
        let text = reply.strip_prefix("ACCESS_REFUSED - ").unwrap_or(reply);
        let (named, rest) = match text.split_once("access to ") {
            Some((before, rest)) => (before.trim(), Some(rest)),
            None => ("", None),
        };
        let parsed = rest.and_then(|rest| rest.rsplit_once(" refused for user "));
        let resource = parsed.map(|(resource, _)| resource.to_string());
        let permission = match (named, &resource) {
            ("", Some(resource)) => needed(operation, resource).map(String::from),
            ("", None) => None,
            (named, _) => Some(named.to_string()),
        };
        Refusal {
            permission,
            resource,
            user: parsed.map(|(_, user)| user.trim_matches('\'').to_string()),
            reply: reply.to_string(),
        }
    }

    /// `read on queue 'mail' in vhost 'shop' for user 'web'`, or the broker's text.
    fn describe(&self) -> String {
        match (&self.permission, &self.resource, &self.user) {
            (Some(permission), Some(resource), Some(user)) => {
                format!("{permission} on {resource} for user '{user}'")
            }
            _ => self.reply.clone(),
        }
    }
}

/// The permission `operation` needs on `resource` (`queue '…' in vhost '…'` or `exchange
/// '…' …`), as RabbitMQ checks it (docs/scaling.md has the table).
fn needed(operation: &str, resource: &str) -> Option<&'static str> {
    let exchange = resource.starts_with("exchange ");
    let method = operation.split(' ').next().unwrap_or(operation);
    Some(match method {
        "basic.consume" | "basic.get" | "queue.purge" => "read",
        "basic.publish" | "publisher" => "write",
        "exchange.declare" | "exchange.delete" | "queue.delete" => "configure",
        // A queue with a dead-letter exchange also needs read on itself and write on it.
        "queue.declare" if exchange => "write",
        "queue.declare" if operation.contains("(delay") => "configure or read",
        "queue.declare" => "configure",
        "queue.bind" | "queue.unbind" if exchange => "read",
        "queue.bind" | "queue.unbind" => "write",
        // Write on the destination, read on the source: the broker's text does not say which.
        "exchange.bind" | "exchange.unbind" => "write or read",
        _ => return None,
    })
}

fn in_list(position: Option<(usize, usize)>) -> String {
    position.map_or_else(String::new, |(i, count)| {
        format!(" (address {i} of {count} in the list)")
    })
}

fn joined(errors: &[Error]) -> String {
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    shown.join("; ")
}

/// Why a queue, exchange or routing key name is refused; the message says what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// An empty queue name.
    #[error("a queue name cannot be empty")]
    Empty,
    /// A name longer than the limit.
    #[error("{what} {name:?} is {len} bytes long; the limit is {max}")]
    TooLong {
        /// `queue name`, `exchange name`, `routing key`.
        what: &'static str,
        /// The name.
        name: String,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A name in the `amq.` namespace.
    #[error("queue name {name:?} starts with \"amq.\", which RabbitMQ reserves")]
    Reserved {
        /// The name.
        name: String,
    },
    /// A character outside letters, digits and `. _ - :`.
    #[error("queue name {name:?} contains {bad:?}; use letters, digits and . _ - :")]
    BadCharacter {
        /// The name.
        name: String,
        /// The first character refused.
        bad: char,
    },
}

/// Why arguments could not be encoded or a body decoded.
#[derive(Debug, thiserror::Error)]
#[error("{format}: {source}")]
pub struct SerializeError {
    /// The serializer's name (`json`, `msgpack`).
    pub format: &'static str,
    /// The serializer's own error.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl SerializeError {
    pub(crate) fn new(
        format: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            format,
            source: Box::new(source),
        }
    }
}

impl Error {
    /// Whether retrying the same operation cannot help: the request itself is refused (a
    /// name, a delay too long), not the broker unavailable.
    pub(crate) fn is_permanent(&self) -> bool {
        matches!(
            self,
            Error::InvalidName(_) | Error::DelayTooLong { .. } | Error::Config(_)
        )
    }

    /// Whether the broker reported a missing object (a queue or exchange deleted under a
    /// running process): a mandatory publish returned unroutable, or a channel closed with
    /// `404 NOT_FOUND`. Declaring the object again heals it.
    pub(crate) fn is_missing_object(&self) -> bool {
        match self {
            Error::Unroutable { .. } => true,
            Error::Broker { source, .. } => is_not_found(source),
            _ => false,
        }
    }

    /// Wraps lapin's error of `operation`: an `ACCESS_REFUSED` reply becomes
    /// [`Error::AccessRefused`], naming the permission; anything else [`Error::Broker`].
    pub fn broker(operation: &'static str) -> impl FnOnce(lapin::Error) -> Error {
        move |source| match access_refused(operation, &source) {
            Some(refusal) => Error::AccessRefused {
                operation,
                refusal: Box::new(refusal),
                source,
            },
            None => Error::Broker { operation, source },
        }
    }
}

/// The refusal, if lapin reports a channel or connection closed with `403 ACCESS_REFUSED`.
fn access_refused(operation: &str, error: &lapin::Error) -> Option<Refusal> {
    use lapin::{protocol::AMQPErrorKind, protocol::AMQPSoftError, ErrorKind};
    match error.kind() {
        ErrorKind::ProtocolError(amqp)
            if matches!(
                amqp.kind(),
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
            ) =>
        {
            Some(Refusal::parse(operation, amqp.get_message().as_str()))
        }
        _ => None,
    }
}

/// Whether lapin reports a channel closed with `404 NOT_FOUND` (an exchange or queue that
/// does not exist).
pub(crate) fn is_not_found(error: &lapin::Error) -> bool {
    use lapin::{protocol::AMQPErrorKind, protocol::AMQPSoftError, ErrorKind};
    match error.kind() {
        ErrorKind::ProtocolError(amqp) => {
            matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::Refusal;

    #[test]
    fn a_refusal_names_the_permission_the_object_and_the_user() {
        // RabbitMQ 3.10 does not name the permission: the operation and the object tell it.
        let consume = Refusal::parse(
            "basic.consume",
            "ACCESS_REFUSED - access to queue 'mail' in vhost 'shop' refused for user 'web'",
        );
        assert_eq!(consume.permission.as_deref(), Some("read"));
        assert_eq!(
            consume.resource.as_deref(),
            Some("queue 'mail' in vhost 'shop'")
        );
        assert_eq!(consume.user.as_deref(), Some("web"));
        assert_eq!(
            consume.describe(),
            "read on queue 'mail' in vhost 'shop' for user 'web'"
        );
        let bind = |resource: &str| {
            let reply =
                format!("ACCESS_REFUSED - access to {resource} in vhost 'v' refused for user 'u'");
            Refusal::parse("queue.bind", &reply).permission
        };
        assert_eq!(bind("exchange 'palermo.events'").as_deref(), Some("read"));
        assert_eq!(bind("queue 'palermo.events'").as_deref(), Some("write"));
        // Newer brokers say it.
        let named = Refusal::parse(
            "queue.declare",
            "ACCESS_REFUSED - configure access to queue 'q' in vhost 'v' refused for user 'u'",
        );
        assert_eq!(named.permission.as_deref(), Some("configure"));
        let odd = Refusal::parse("basic.get", "ACCESS_REFUSED - something else");
        assert_eq!((&odd.permission, &odd.resource), (&None, &None));
        assert_eq!(odd.describe(), "ACCESS_REFUSED - something else");
    }
}

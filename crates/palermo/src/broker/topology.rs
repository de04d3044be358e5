//! The broker objects every Palermo process shares, and the one place that declares them:
//! the `palermo` exchange, the job queues, the failed queue and the events exchange and queue.
//!
//! Every job goes through the durable direct exchange `palermo`, with the queue name as
//! routing key. Publishers and workers both declare a queue and its binding before using it
//! (declaring again with the same arguments is harmless), so no message is dropped because no
//! worker has started yet.
//!
//! A queue that belongs to one feature is declared by that feature, next to the arguments
//! only it knows, with [`QueueType`] and [`inequivalent`] from here: the delay queues
//! (`broker/delay/`: a TTL and a dead-letter route per level; `delay/quorum.rs` on quorum
//! queues), the scheduler's leader queue and its status queue (`periodic/leader.rs`,
//! `periodic/status.rs`), and one queue per unique lock (`unique.rs`, with an expiry).

use lapin::{
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{FieldTable, ShortString},
    Channel, ExchangeKind,
};

use crate::error::{Error, NameError};

/// The exchange every job is published to.
pub const EXCHANGE: &str = "palermo";
/// Where jobs go when they fail for good; the admin side records them from here.
pub const FAILED_QUEUE: &str = "palermo.failed";
/// The single-active-consumer queue schedulers elect their leader through; its one message
/// (the token) carries the schedules' last ticks (docs/scheduling.md).
pub const SCHEDULER_QUEUE: &str = "palermo.scheduler";
/// The topic exchange workers publish heartbeats and offline events to (routing keys
/// `worker.heartbeat`, `worker.offline`). A durable queue of the same name, bound with `#`,
/// keeps them until the admin side's recorder reads them.
pub const EVENTS_EXCHANGE: &str = "palermo.events";
/// The default topic exchange of operators' commands (`crate::control`).
pub const CONTROL_EXCHANGE: &str = "palermo.control";
/// The most events the events queue keeps when no recorder reads it; the oldest go first.
/// Heartbeats carry cumulative counters, so dropping old ones loses no count.
pub const EVENTS_QUEUE_MAX_LENGTH: i64 = 10_000;
/// Longest queue name accepted, in bytes (AMQP allows 255; the rest is kept for suffixes).
pub const MAX_QUEUE_NAME: usize = 200;

/// Checks a queue name; the error says what to change.
pub fn validate_queue_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_QUEUE_NAME {
        return Err(NameError::TooLong {
            what: "queue name",
            name: name.into(),
            len: name.len(),
            max: MAX_QUEUE_NAME,
        });
    }
    if name.starts_with("amq.") {
        return Err(NameError::Reserved { name: name.into() });
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':')))
    {
        return Err(NameError::BadCharacter {
            name: name.into(),
            bad,
        });
    }
    Ok(())
}

/// `name` as an AMQP short string (at most 255 bytes); `what` names it in the error.
pub(crate) fn short_name(what: &'static str, name: &str) -> Result<ShortString, NameError> {
    ShortString::try_new(name).map_err(|_| NameError::TooLong {
        what,
        name: name.into(),
        len: name.len(),
        max: 255,
    })
}

/// Declares the `palermo` exchange.
pub async fn declare_exchange(channel: &Channel) -> Result<(), Error> {
    declare_durable_exchange(
        channel,
        EXCHANGE,
        ExchangeKind::Direct,
        FieldTable::default(),
    )
    .await
}

/// Declares a durable exchange of `kind` named `name` with `arguments` (every exchange
/// Palermo uses is durable).
pub async fn declare_durable_exchange(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
    arguments: FieldTable,
) -> Result<(), Error> {
    let name = short_name("exchange name", name)?;
    channel
        .exchange_declare(
            name,
            kind,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await
        .map_err(Error::broker("exchange.declare"))
}

/// The kind of RabbitMQ queue Palermo declares for job queues, the failed queue and the
/// delay queues. One deployment uses one kind everywhere (`PALERMO_QUEUE_TYPE`): RabbitMQ
/// refuses to re-declare a queue as another kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueType {
    /// Classic queues: one node, the fastest consumers. The default.
    #[default]
    Classic,
    /// Quorum queues: replicated over a cluster (Raft), for deployments that must survive
    /// the loss of a node. They refuse channel-wide prefetch, so a worker slot then holds up
    /// to one unacked delivery per queue it serves; they count redeliveries themselves
    /// (`x-delivery-count`).
    Quorum,
}

/// The delivery limit RabbitMQ 4.0 gives every quorum queue that sets none: a message
/// returned this many times is delivered once more (`x-delivery-count` = 20), then dropped
/// (Palermo's job queues have no dead-letter exchange). 3.x has no default limit. The
/// poison guard (`WorkerConfig::max_redeliveries`) must act first, so it may not exceed it.
pub const QUORUM_DELIVERY_LIMIT: u32 = 20;

impl QueueType {
    /// `classic` or `quorum`.
    pub fn name(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }

    /// The `queue.declare` arguments that make a queue of this type.
    pub fn arguments(self) -> FieldTable {
        let mut args = FieldTable::default();
        if self == QueueType::Quorum {
            args.insert(
                "x-queue-type".into(),
                lapin::types::AMQPValue::LongString("quorum".into()),
            );
        }
        args
    }
}

impl std::str::FromStr for QueueType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "classic" => Ok(QueueType::Classic),
            "quorum" => Ok(QueueType::Quorum),
            other => Err(Error::Config(format!(
                "queue type {other:?} is not classic or quorum"
            ))),
        }
    }
}

impl std::fmt::Display for QueueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Declares a durable job queue of `queue_type` and binds it to the exchange under its own
/// name.
pub async fn declare_queue(
    channel: &Channel,
    queue: &str,
    queue_type: QueueType,
) -> Result<(), Error> {
    declare_job_queue(channel, queue, queue_type, None).await
}

/// [`declare_queue`] with the deployment's `max_priority` ([`crate::broker::priority`]): a priority
/// queue when set. A queue that exists with another `x-max-priority` is an
/// [`Error::Config`] that names the setting (the broker closes the channel).
pub async fn declare_job_queue(
    channel: &Channel,
    queue: &str,
    queue_type: QueueType,
    max_priority: Option<u8>,
) -> Result<(), Error> {
    validate_queue_name(queue)?;
    let arguments = job_queue_arguments(queue_type, max_priority)?;
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), arguments)
        .await
        .map_err(Error::broker("queue.declare"))
        .map_err(|e| match mismatch(queue, max_priority, &e) {
            Some(priority) => priority,
            None => inequivalent(queue, queue_type, e),
        })?;
    channel
        .queue_bind(
            queue.into(),
            EXCHANGE.into(),
            queue.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(Error::broker("queue.bind"))
}

/// Declares the events topic exchange `name`, the durable queue of the same name and of
/// `queue_type` (capped at [`EVENTS_QUEUE_MAX_LENGTH`], oldest dropped first) and the binding
/// between them. Workers and the recorder both call this, so the arguments always match.
pub async fn declare_events(
    channel: &Channel,
    name: &str,
    queue_type: QueueType,
) -> Result<(), Error> {
    validate_queue_name(name)?;
    declare_durable_exchange(channel, name, ExchangeKind::Topic, FieldTable::default()).await?;
    let mut arguments = queue_type.arguments();
    arguments.insert(
        "x-max-length".into(),
        lapin::types::AMQPValue::LongLongInt(EVENTS_QUEUE_MAX_LENGTH),
    );
    channel
        .queue_declare(name.into(), QueueDeclareOptions::durable(), arguments)
        .await
        .map_err(Error::broker("queue.declare"))
        .map_err(|e| inequivalent(name, queue_type, e))?;
    channel
        .queue_bind(
            name.into(),
            name.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(Error::broker("queue.bind"))
}

/// Rewrites the broker's refusal to declare `queue` with other arguments than it has
/// (`406 PRECONDITION_FAILED - inequivalent arg`) into an error that says why it happens and
/// what to do: the queue was made by a deployment of the other queue type, or by an older
/// Palermo (before the events and status queues followed `--queue-type`).
pub(crate) fn inequivalent(queue: &str, queue_type: QueueType, error: Error) -> Error {
    let text = error.to_string();
    if !text.contains("inequivalent arg") {
        return error;
    }
    Error::Config(format!(
        "queue {queue} exists with other arguments than this {queue_type} deployment declares; \
         every client, worker and admin tool of a deployment must use the same --queue-type, \
         and a queue made by another type or an older Palermo must be drained and deleted \
         (docs/reliability.md, \"Changing the queue type\") ({text})"
    ))
}

/// What AMQP tells about a queue: messages ready for delivery and consumers. (AMQP has no
/// count of unacked messages; the admin side gets those from worker heartbeats.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueDepth {
    /// Messages waiting for a consumer.
    pub ready: u32,
    /// Consumers attached.
    pub consumers: u32,
}

/// Looks a queue up without creating it (a passive declare, on a throwaway channel because
/// the broker closes the channel when the queue does not exist). `None`: no such queue.
pub async fn inspect(
    connection: &lapin::Connection,
    queue: &str,
) -> Result<Option<QueueDepth>, Error> {
    let channel = connection
        .create_channel()
        .await
        .map_err(Error::broker("channel.open"))?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let name = short_name("queue name", queue)?;
    match channel
        .queue_declare(name, passive, FieldTable::default())
        .await
    {
        Ok(q) => {
            let _ = channel.close(200, "done".into()).await;
            Ok(Some(QueueDepth {
                ready: q.message_count(),
                consumers: q.consumer_count(),
            }))
        }
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(Error::broker("queue.declare (passive)")(e)),
    }
}

/// What a setting of `max_priority` must satisfy: 1 to 255 (RabbitMQ advises at most 10:
/// each level of a classic priority queue costs an internal queue and some CPU). On quorum
/// queues the broker must order them too (`priority::check_broker`).
pub fn validate_max_priority(
    _queue_type: QueueType,
    max_priority: Option<u8>,
) -> Result<(), Error> {
    match max_priority {
        Some(0) => Err(Error::Config(
            "max priority 0 makes no priority queue; leave it unset instead".into(),
        )),
        _ => Ok(()),
    }
}

/// The `queue.declare` arguments of a job queue: its type and, when set on a classic queue,
/// `x-max-priority` (a quorum queue refuses it: on 4.0 it orders by priority without it).
pub fn job_queue_arguments(
    queue_type: QueueType,
    max_priority: Option<u8>,
) -> Result<FieldTable, Error> {
    validate_max_priority(queue_type, max_priority)?;
    let mut args = queue_type.arguments();
    if let (Some(max), QueueType::Classic) = (max_priority, queue_type) {
        args.insert(
            "x-max-priority".into(),
            lapin::types::AMQPValue::ShortShortUInt(max),
        );
    }
    Ok(args)
}

/// The broker's refusal to declare `queue` (`PRECONDITION_FAILED - inequivalent arg
/// 'x-max-priority'`) as an error that names the setting to fix, or `None` when the refusal
/// is about another argument (the queue type: [`inequivalent`] names that one).
pub(crate) fn mismatch(queue: &str, max_priority: Option<u8>, error: &Error) -> Option<Error> {
    let text = error.to_string();
    if !text.contains("'x-max-priority'") {
        return None;
    }
    let ours = max_priority.map_or("none".to_string(), |m| m.to_string());
    Some(Error::Config(format!(
        "queue {queue} exists with another x-max-priority than this process's max priority \
         for it ({ours}); give every client, worker and admin command of the deployment the \
         same priority queues (--max-priority {queue}=N or PALERMO_MAX_PRIORITY, \
         Deployment::priorities), or delete the queue to change it ({text})"
    )))
}

pub(crate) fn is_not_found(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(e) if e.get_id() == 404
    )
}

#[cfg(test)]
mod tests {
    use lapin::types::AMQPValue;

    use super::*;

    #[test]
    fn the_hint_names_the_argument_that_differs() {
        let refused = |arg: &str| {
            Error::Config(format!(
                "PRECONDITION_FAILED - inequivalent arg '{arg}' for queue 'q' in vhost '/'"
            ))
        };
        let hint = mismatch("q", Some(5), &refused("x-max-priority")).expect("priority");
        assert!(hint.to_string().contains("--max-priority q=N"), "{hint}");
        assert!(!hint.to_string().contains("--queue-type"), "{hint}");
        assert!(mismatch("q", Some(5), &refused("x-queue-type")).is_none());
        let hint = inequivalent("q", QueueType::Classic, refused("x-queue-type"));
        assert!(hint.to_string().contains("--queue-type"), "{hint}");
    }

    #[test]
    fn zero_is_refused_and_quorum_queues_get_no_max_priority() {
        assert!(validate_max_priority(QueueType::Quorum, None).is_ok());
        assert!(validate_max_priority(QueueType::Classic, Some(0)).is_err());
        assert!(validate_max_priority(QueueType::Quorum, Some(0)).is_err());
        let args = job_queue_arguments(QueueType::Classic, Some(10)).expect("classic");
        assert_eq!(
            args.inner().get("x-max-priority"),
            Some(&AMQPValue::ShortShortUInt(10))
        );
        let args = job_queue_arguments(QueueType::Quorum, Some(10)).expect("quorum");
        assert_eq!(args.inner().get("x-max-priority"), None);
        assert!(args.inner().contains_key("x-queue-type"));
    }

    #[test]
    fn queue_types_parse() {
        assert!(matches!("quorum".parse(), Ok(super::QueueType::Quorum)));
        assert!("stream".parse::<super::QueueType>().is_err());
    }

    #[test]
    fn queue_names() {
        assert!(validate_queue_name("mail").is_ok());
        assert!(validate_queue_name("video.hd-1:x_y").is_ok());
        for bad in ["", "amq.x", "a b", "é", &"q".repeat(201)] {
            assert!(validate_queue_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}

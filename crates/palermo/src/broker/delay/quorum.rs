//! What the quorum delay layout adds to the classic one, so that a broker crash or a lost
//! node cannot lose a delayed job.
//!
//! Classic level queues dead-letter *at-most-once*: an expired message leaves its queue
//! before the next level has it, and a crash in between loses it (the gap docs/reliability.md
//! used to document). The quorum level queues dead-letter *at-least-once* (RabbitMQ 3.10+):
//! the message stays in its queue until the next level, or the job queue, has confirmed it.
//! RabbitMQ accepts that strategy only with `x-overflow = reject-publish`; the level queues
//! have no length limit, so that refuses nothing unless an operator's policy sets one, and
//! then the publisher gets a nack ([`crate::Error::Nacked`]), never a silent drop.
//!
//! At-least-once has one trap: a message that no queue takes is kept and retried for ever.
//! The last hop, from the delivery exchange to the job queue, has no route when the job
//! queue was deleted while jobs for it waited; those messages would pile up in the level
//! queue, in memory and in the dead-letter worker's way. So the delivery exchange has an
//! alternate exchange: what it cannot route goes to the quorum queue `<prefix>orphans`
//! (the newest [`ORPHANS_MAX_LENGTH`] jobs and [`ORPHANS_MAX_BYTES`] kept), where an
//! operator can see and move them.

use lapin::{
    options::{QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString},
    Channel, ExchangeKind,
};

use super::Layout;
use crate::{
    broker::topology::{self, QueueType},
    error::Error,
};

/// The most delayed jobs the orphans queue keeps; the oldest go first.
const ORPHANS_MAX_LENGTH: i64 = 10_000;
/// The most bytes of message bodies it keeps (jobs of 64 KiB would otherwise fill 640 MiB).
const ORPHANS_MAX_BYTES: i64 = 64 * 1024 * 1024;

/// Adds the at-least-once dead-lettering arguments to a level queue's `args`.
pub(super) fn at_least_once(args: &mut FieldTable) {
    args.insert(
        "x-dead-letter-strategy".into(),
        AMQPValue::LongString("at-least-once".into()),
    );
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
}

/// Declares the orphans exchange and queue of `layout` and returns the delivery exchange's
/// arguments that send unroutable jobs there.
pub(super) async fn orphans(channel: &Channel, layout: Layout) -> Result<FieldTable, Error> {
    let name = layout.orphans();
    topology::declare_durable_exchange(channel, &name, ExchangeKind::Fanout, FieldTable::default())
        .await?;
    let mut args = QueueType::Quorum.arguments();
    args.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(ORPHANS_MAX_LENGTH),
    );
    args.insert(
        "x-max-length-bytes".into(),
        AMQPValue::LongLongInt(ORPHANS_MAX_BYTES),
    );
    channel
        .queue_declare(name.as_str().into(), QueueDeclareOptions::durable(), args)
        .await
        .map_err(Error::broker("queue.declare (delay orphans)"))
        .map_err(|e| topology::inequivalent(&name, QueueType::Quorum, e))?;
    channel
        .queue_bind(
            name.as_str().into(),
            name.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(Error::broker("queue.bind (delay orphans)"))?;
    let mut deliver = FieldTable::default();
    deliver.insert(
        "alternate-exchange".into(),
        AMQPValue::LongString(LongString::from(name.as_str())),
    );
    Ok(deliver)
}

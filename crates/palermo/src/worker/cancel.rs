//! The worker's end of cancellations ([`crate::control::cancellations`]): the ids it knows to
//! be cancelled ([`Cancels`], in memory, bounded), and the task that reads them from the
//! stream.
//!
//! - **When it connects** (at start and after every reconnect, before any slot consumes on
//!   that connection, `link::connect`), the worker reads the whole retained stream
//!   ([`catch_up`]): it publishes a sync marker of its own and reads from the first entry
//!   until it meets it, so every cancellation stored before it is known before the first
//!   delivery. That is what makes a cancellation outlive the workers that heard it.
//! - **Then it listens** ([`listen`]) from the entry after the marker, so a cancellation
//!   issued later reaches it within a moment.
//! - **The hot path** ([`Cancels::check`]) pays one atomic load while no id is known, and a
//!   hash lookup under a lock otherwise: no broker round trip per delivery.
//!
//! A cancellation for a job running here raises its [`CancelSignal`] (found through the
//! slots' in-flight records, `stats.rs`); the run then has its grace period
//! (`decide.rs`). The order makes the race safe: the listener records the id before it looks
//! at the in-flight records, and a slot records its job in flight before it checks the id.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicI64, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::Duration,
};

use futures_lite::StreamExt;
use lapin::{
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions},
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection, Consumer,
};
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::{link::Link, Shared};
use crate::{
    broker,
    control::cancellations::{self, Cancellation, MAX_REMEMBERED, RETENTION},
    error::Error,
    shutdown::Shutdown,
    wire,
};

/// The AMQP `type` of a worker's sync marker on the stream (not a cancellation).
pub(crate) const SYNC_TYPE: &str = "palermo.cancellations.sync";
/// How many stream entries the broker sends ahead of the acks (streams require a prefetch).
const PREFETCH: u16 = 500;
/// How long the listener waits before subscribing again after its channel alone closed.
const RETRY: Duration = Duration::from_secs(1);
/// How long reading the stream up to the marker may take at connect time.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// The cancelled ids this worker knows, with who cancelled each and when.
#[derive(Debug, Default)]
pub(crate) struct Cancels {
    /// How many ids are known: 0 lets the hot path skip the lock.
    len: AtomicUsize,
    book: Mutex<Book>,
    /// The stream offset to listen from (after this worker's last sync marker).
    next_offset: AtomicI64,
}

#[derive(Debug, Default)]
struct Book {
    by_id: HashMap<Uuid, (Arc<str>, i64)>,
    /// Ids in the order they were first heard, with their cancellation time.
    order: VecDeque<(Uuid, i64)>,
}

impl Cancels {
    /// Who cancelled `id` and when, if it is cancelled.
    pub fn check(&self, id: &Uuid) -> Option<(Arc<str>, i64)> {
        if self.len.load(Ordering::SeqCst) == 0 {
            return None;
        }
        self.lock().by_id.get(id).cloned()
    }

    /// Remembers `cancellation` (forgetting what is past the retention or over the bound);
    /// `true` when it was new.
    pub fn insert(&self, cancellation: &Cancellation, now: i64) -> bool {
        let retention = i64::try_from(RETENTION.as_millis()).unwrap_or(i64::MAX);
        if now.saturating_sub(cancellation.at) > retention {
            return false;
        }
        let mut book = self.lock();
        while let Some(&(old, at)) = book.order.front() {
            if book.order.len() < MAX_REMEMBERED && now.saturating_sub(at) <= retention {
                break;
            }
            book.order.pop_front();
            book.by_id.remove(&old);
        }
        let new = !book.by_id.contains_key(&cancellation.id);
        if new {
            let by: Arc<str> = cancellation.by.as_str().into();
            book.by_id.insert(cancellation.id, (by, cancellation.at));
            book.order.push_back((cancellation.id, cancellation.at));
        }
        self.len.store(book.by_id.len(), Ordering::SeqCst);
        new
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Reads the retained stream on `connection` into the worker's memory, up to a sync marker
/// it publishes first; the listener goes on from there.
pub(crate) async fn catch_up(shared: &Shared, connection: &Connection) -> Result<(), Error> {
    let read = async {
        let channel = broker::confirm_channel(connection).await?;
        let stream = cancellations::declare(&channel, &shared.config.deployment).await?;
        let mut consumer = consume(
            shared,
            &channel,
            &stream,
            AMQPValue::LongString("first".into()),
        )
        .await?;
        let marker = Uuid::new_v4().to_string();
        let properties = BasicProperties::default()
            .with_type(SYNC_TYPE.into())
            .with_message_id(marker.as_str().into())
            .with_app_id(wire::APP_ID.into());
        broker::publish_via(&channel, "", &stream, &stream, b"{}", properties)
            .await?
            .confirmed()
            .await?;
        let mut learned = 0usize;
        while let Some(delivery) = consumer.next().await {
            let delivery = delivery.map_err(Error::broker("basic.consume (cancellations)"))?;
            let properties = &delivery.properties;
            let is_marker = properties.kind().as_ref().map(|k| k.as_str()) == Some(SYNC_TYPE)
                && properties.message_id().as_ref().map(|m| m.as_str()) == Some(marker.as_str());
            if is_marker {
                if let Some(offset) = offset_of(&delivery) {
                    shared
                        .cancels
                        .next_offset
                        .store(offset + 1, Ordering::SeqCst);
                }
                let _ = channel.close(200, "caught up".into()).await;
                return Ok(learned);
            }
            if learn(shared, &delivery) {
                learned += 1;
            }
            ack(&delivery).await;
        }
        Err(Error::Config(
            "the cancellations stream ended before this worker's sync marker".into(),
        ))
    };
    let learned = tokio::time::timeout(CATCH_UP_TIMEOUT, read)
        .await
        .map_err(|_| {
            Error::Config(format!(
                "reading the cancellations stream took longer than {CATCH_UP_TIMEOUT:?}"
            ))
        })??;
    if learned > 0 {
        info!(
            cancelled = learned,
            "cancelled jobs known from the stream are not run"
        );
    }
    Ok(())
}

/// Listens for cancellations from after the last sync marker until the task is aborted,
/// subscribing again on every new connection (which `catch_up` read first).
pub(crate) async fn listen(shared: Arc<Shared>, mut link: Link, mut shutdown: Shutdown) {
    let mut dead = 0;
    loop {
        let linked = tokio::select! {
            () = shutdown.requested() => return,
            linked = link.newer_than(dead) => match linked {
                Some(linked) => linked,
                None => return,
            },
        };
        match subscribe(&shared, &linked.connection).await {
            Ok((_channel, mut consumer)) => {
                while let Some(delivery) = consumer.next().await {
                    let Ok(delivery) = delivery else { break };
                    learn(&shared, &delivery);
                    if let Some(offset) = offset_of(&delivery) {
                        shared
                            .cancels
                            .next_offset
                            .store(offset + 1, Ordering::SeqCst);
                    }
                    ack(&delivery).await;
                }
            }
            Err(e) => debug!(error = %e, "cannot listen for cancellations yet"),
        }
        if linked.connection.status().connected() {
            tokio::time::sleep(RETRY).await;
        } else {
            dead = linked.generation;
        }
    }
}

async fn subscribe(shared: &Shared, connection: &Connection) -> Result<(Channel, Consumer), Error> {
    let channel = connection
        .create_channel()
        .await
        .map_err(Error::broker("channel.open"))?;
    let stream = cancellations::declare(&channel, &shared.config.deployment).await?;
    let from = shared.cancels.next_offset.load(Ordering::SeqCst);
    let consumer = consume(shared, &channel, &stream, AMQPValue::LongLongInt(from)).await?;
    Ok((channel, consumer))
}

async fn consume(
    shared: &Shared,
    channel: &Channel,
    stream: &str,
    offset: AMQPValue,
) -> Result<Consumer, Error> {
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .map_err(Error::broker("basic.qos"))?;
    let mut arguments = FieldTable::default();
    arguments.insert("x-stream-offset".into(), offset);
    channel
        .basic_consume(
            stream.into(),
            format!("{}:cancellations", shared.tag_prefix).into(),
            BasicConsumeOptions::default(),
            arguments,
        )
        .await
        .map_err(Error::broker("basic.consume (cancellations)"))
}

/// Remembers the cancellation in `delivery` and tells its run, if it runs here. `true` for
/// a new id.
fn learn(shared: &Shared, delivery: &lapin::message::Delivery) -> bool {
    if delivery.properties.kind().as_ref().map(|k| k.as_str()) == Some(SYNC_TYPE) {
        return false;
    }
    let cancellation = match serde_json::from_slice::<Cancellation>(&delivery.data) {
        Ok(cancellation) => cancellation,
        Err(e) => {
            warn!(error = %e, "ignoring an entry of the cancellations stream that is not a cancellation");
            return false;
        }
    };
    let new = shared.cancels.insert(&cancellation, wire::now_ms());
    // After the id is recorded: a job that starts now finds it; one already running is here.
    if shared
        .stats
        .raise(&cancellation.id, &cancellation.by, cancellation.at)
    {
        info!(job.id = %cancellation.id, by = %cancellation.by, "cancelling a running job");
    }
    new
}

fn offset_of(delivery: &lapin::message::Delivery) -> Option<i64> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get("x-stream-offset")? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        _ => None,
    }
}

async fn ack(delivery: &lapin::message::Delivery) {
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        debug!(error = %e, "acking a cancellations entry failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cancellation(at: i64) -> Cancellation {
        Cancellation {
            id: Uuid::new_v4(),
            by: "ada".into(),
            at,
        }
    }

    #[test]
    fn remembers_within_the_retention_only() {
        let cancels = Cancels::default();
        let now = 10 * RETENTION.as_millis() as i64;
        let fresh = cancellation(now - 1000);
        assert!(cancels.check(&fresh.id).is_none());
        assert!(cancels.insert(&fresh, now));
        assert!(!cancels.insert(&fresh, now), "known already");
        assert_eq!(
            cancels.check(&fresh.id).map(|(by, _)| by.to_string()),
            Some("ada".into())
        );
        let stale = cancellation(now - RETENTION.as_millis() as i64 - 1);
        assert!(!cancels.insert(&stale, now));
        assert!(cancels.check(&stale.id).is_none());
        // Past the retention, the oldest is forgotten at the next insert.
        let later = now + RETENTION.as_millis() as i64;
        assert!(cancels.insert(&cancellation(later), later));
        assert!(cancels.check(&fresh.id).is_none());
    }
}

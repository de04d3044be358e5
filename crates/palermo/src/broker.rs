//! Connecting to RabbitMQ and publishing with a confirm: the two AMQP operations that the
//! client and the worker share. Every connection Palermo opens goes through [`connect`], to
//! one of the addresses of the list ([`addresses`]).
//!
//! The broker-side concerns that the client, the worker and the admin tools share live below
//! this module: which objects exist and how they are declared ([`topology`]), priority
//! queues ([`priority`]), the delay queues that hold retries and scheduled jobs ([`delay`]),
//! and what a connection blocked by a broker alarm does ([`blocked`]). The client's
//! connection handling is `client/session.rs`; the worker's repair of deleted objects is
//! `worker/heal.rs`.

mod addresses;
pub(crate) mod blocked;
pub(crate) mod delay;
pub(crate) mod priority;
pub(crate) mod topology;
mod version;

use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    BasicProperties, Channel, Connection,
};

pub use addresses::{redact, Addresses, NODE_TIMEOUT};
pub use version::Version;

use crate::error::Error;
use topology::EXCHANGE;

/// The largest AMQP frame asked for when the URL sets no `frame_max`, in bytes: RabbitMQ's
/// own default, so the frames are what they would be anyway.
///
/// Saying it up front saves memory: lapin keeps a send and a receive ring buffer of 32 frames
/// each per connection. Left to learn the frame size from the broker, it grows the buffers
/// to 4 MiB each and zero-fills them, 8 MiB resident from the start (half of an idle
/// worker); told it before connecting, it allocates them untouched, and only the pages that
/// traffic reaches become resident (docs/performance.md).
pub const FRAME_MAX: u32 = 128 * 1024;

/// The AMQP heartbeat asked for when the URL sets no `heartbeat`, in seconds (the broker and
/// the client settle on the lower of their two values; RabbitMQ proposes 60).
///
/// A connection is declared dead after two missed heartbeats, so a silent network cut (a
/// peer gone without a FIN: a pulled cable, a NAT or firewall dropping an idle flow) is
/// noticed within a minute instead of two; a frame every 15 s each way costs nothing.
/// Shorter is not safer: lapin sends heartbeats from its own I/O thread, so busy jobs do not
/// delay them, but a congested link or a paused VM would then cut healthy connections
/// (docs/reliability.md).
pub const HEARTBEAT: u16 = 30;

/// Opens a connection to the broker at `url`, or to one that answers of a comma-separated
/// list ([`Addresses`]); `name` shows in RabbitMQ's connection list.
pub async fn connect(url: &str, name: &str) -> Result<Connection, Error> {
    connect_with_heartbeat(url, name, HEARTBEAT).await
}

/// [`connect`] with an AMQP heartbeat of `heartbeat` seconds unless the URL sets one (the
/// scheduler's, shorter, so that a silent death hands over sooner).
pub(crate) async fn connect_with_heartbeat(
    url: &str,
    name: &str,
    heartbeat: u16,
) -> Result<Connection, Error> {
    connect_to(&Addresses::parse(url)?, name, heartbeat).await
}

/// [`connect`] to addresses parsed already (a client parses its list once).
pub(crate) async fn connect_to(
    addresses: &Addresses,
    name: &str,
    heartbeat: u16,
) -> Result<Connection, Error> {
    addresses.connect(name, FRAME_MAX, heartbeat).await
}

/// Opens a channel in confirm mode.
pub async fn confirm_channel(conn: &Connection) -> Result<Channel, Error> {
    let channel = conn
        .create_channel()
        .await
        .map_err(Error::broker("channel.open"))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(Error::broker("confirm.select"))?;
    Ok(channel)
}

/// A publish that the broker has received but not yet confirmed.
pub struct Pending {
    queue: String,
    /// `None` for a message stored without a broker ([`crate::testing`]).
    confirm: Option<lapin::PublisherConfirm>,
}

impl Pending {
    /// A message already stored (by the fake client of [`crate::testing`]).
    pub(crate) fn stored(queue: &str) -> Self {
        Self {
            queue: queue.to_string(),
            confirm: None,
        }
    }

    /// Waits for the broker's confirm; only `Ok` means the message is stored.
    pub async fn confirmed(self) -> Result<(), Error> {
        let Some(confirm) = self.confirm else {
            return Ok(());
        };
        let confirmation = confirm.await.map_err(Error::broker("publisher confirm"))?;
        if confirmation.is_nack() {
            return Err(Error::Nacked { queue: self.queue });
        }
        if confirmation.take_message().is_some() {
            return Err(Error::Unroutable { queue: self.queue });
        }
        Ok(())
    }
}

/// Publishes a persistent, mandatory message to `queue` through the `palermo` exchange,
/// without waiting for the confirm (pipelining).
pub async fn publish(
    channel: &Channel,
    queue: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<Pending, Error> {
    publish_via(channel, EXCHANGE, queue, queue, body, properties).await
}

/// Publishes a persistent, mandatory message through `exchange` with `routing_key`, bound
/// for `queue` (named in errors), without waiting for the confirm. The delay queues use it.
pub async fn publish_via(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    queue: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<Pending, Error> {
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            properties.with_delivery_mode(2),
        )
        .await
        .map_err(Error::broker("basic.publish"))?;
    Ok(Pending {
        queue: queue.to_string(),
        confirm: Some(confirm),
    })
}

/// Publishes and waits for the confirm.
pub async fn publish_confirmed(
    channel: &Channel,
    queue: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), Error> {
    publish(channel, queue, body, properties)
        .await?
        .confirmed()
        .await
}

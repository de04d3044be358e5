//! The library's delay layout (retries, snoozes, scheduled jobs wait in shared per-level
//! queues, crates/palermo/src/delay), seen from the tests: counting what waits, naming the
//! level queues, and watching the retries of one queue. The layout is shared by every test
//! and never deleted; what a test adds to it (a probe queue and its binding) is its own.

use std::collections::HashSet;

use lapin::{
    options::{BasicAckOptions, BasicGetOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
    Channel,
};
use palermo::admin::delay::{Kind, Layout, LEVELS};

use super::{amqp_url, queue_type};

fn layout() -> Layout {
    Layout::of(queue_type())
}

/// Jobs waiting in the delay queues of the test's queue type, all tests together.
pub async fn scheduled_waiting() -> u64 {
    let connection = palermo::admin::broker::connect(&amqp_url(), "test: delay count")
        .await
        .expect("connect");
    let waiting = palermo::admin::delay::waiting(&connection, layout())
        .await
        .expect("count the delay queues");
    let _ = connection.close(200, "done".into()).await;
    waiting.scheduled
}

/// The `palermo queues` row name of the scheduled-job level queues.
pub fn scheduled_queues() -> String {
    layout().queues_of(Kind::Scheduled)
}

/// The `palermo queues` row name of the retry level queues.
pub fn retry_queues() -> String {
    layout().queues_of(Kind::Retry)
}

/// Declares `probe` and binds it to the delay layout's first exchange for the retries of
/// `queue` (routing keys `r.<bits>.<queue>`), declaring the layout if nothing has yet.
pub async fn bind_retry_probe(channel: &Channel, probe: &str, queue: &str) {
    palermo::admin::delay::declare(channel, layout())
        .await
        .expect("declare the delay layout");
    channel
        .queue_declare(
            probe.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare the retry probe");
    let first = layout().exchange(LEVELS - 1);
    channel
        .queue_bind(
            probe.into(),
            first.as_str().into(),
            format!("r.#.{queue}").as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind the retry probe");
}

/// Deletes every exchange of the delay layout (the levels and the delivering one), as an
/// operator might. The layout is shared by all tests: only a test that runs alone, under
/// `flock -x /tmp/palermo-broker.lock`, may call this, and it must [`declare`] it again.
pub async fn delete_exchanges(channel: &Channel) {
    let layout = layout();
    let names = (0..LEVELS).map(|level| layout.exchange(level));
    for name in names.chain([layout.deliver_exchange()]) {
        channel
            .exchange_delete(name.as_str().into(), Default::default())
            .await
            .expect("delete a delay exchange");
    }
}

/// Declares the delay layout (a no-op when it is there).
pub async fn declare(channel: &Channel) {
    palermo::admin::delay::declare(channel, layout())
        .await
        .expect("declare the delay layout");
}

/// Takes the scheduled jobs `ids` back out of level `level` of the delay layout, where they
/// wait (acked, so they never reach their deleted queue, or the orphans queue). How many it
/// found.
pub async fn take_back(level: u32, ids: &HashSet<String>) -> usize {
    take(&layout().queue(Kind::Scheduled, level), ids).await
}

/// Takes the messages `ids` out of `queue`, a queue of the shared delay layout, leaving the
/// other tests' messages (held unacked while looking, on a connection of its own, and given
/// back when it closes). How many it found.
pub async fn take(queue: &str, ids: &HashSet<String>) -> usize {
    let connection = palermo::admin::broker::connect(&amqp_url(), "test: take back")
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    let mut found = 0;
    while found < ids.len() {
        let Some(message) = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await
            .expect("basic.get")
        else {
            break;
        };
        let delivery = message.delivery;
        let id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str());
        if id.is_some_and(|id| ids.contains(id)) {
            delivery.ack(BasicAckOptions::default()).await.expect("ack");
            found += 1;
        }
    }
    let _ = connection.close(200, "taken back".into()).await;
    found
}

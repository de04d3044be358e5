//! A raw AMQP connection of the test's own, for what the library does not do for a test:
//! queue depths, taking messages out, publishing by hand. It owns the names the test
//! creates ([`Owned`]), deleted when it is dropped.

use lapin::{
    options::{BasicGetOptions, BasicPublishOptions},
    BasicProperties, Channel, Connection,
};
use palermo::WorkerConfig;

use super::{amqp_url, cleanup::Owned, queue_type, unique};

/// The test's connection and the names it owns.
pub struct Broker {
    pub connection: Connection,
    pub channel: Channel,
    owned: Owned,
}

/// A worker configuration for `queues` on the test broker, failing into `failed` and sending
/// its events to `events`.
pub(super) fn worker_config(queues: &[&str], failed: &str, events: &str) -> WorkerConfig {
    let mut config = WorkerConfig::new(queues.iter().copied());
    config.deployment = palermo::Deployment {
        failed_queue: failed.to_string(),
        events_exchange: events.to_string(),
        ..super::deployment()
    };
    config
}

impl Broker {
    pub async fn connect() -> Broker {
        // Through the library's connect, so that PALERMO_AMQP_URL may list a cluster's nodes.
        let connection = palermo::admin::broker::connect(&amqp_url(), "test")
            .await
            .expect(
                "RabbitMQ must be running for the end-to-end tests (scripts/broker.sh starts it)",
            );
        let channel = connection.create_channel().await.expect("channel");
        Broker {
            connection,
            channel,
            owned: Owned::default(),
        }
    }

    /// What it will delete.
    pub fn owned(&self) -> &Owned {
        &self.owned
    }

    /// Remembers queues to delete.
    pub fn track(&self, queues: &[&str]) {
        for queue in queues {
            self.owned.queue(queue);
        }
    }

    /// A worker configuration for this test: its queues, its own failed queue, its own
    /// events exchange (and queue), all deleted with the others.
    pub fn worker_config(&self, queues: &[&str], failed: &str) -> WorkerConfig {
        let events = self.events_exchange();
        self.track(queues);
        self.track(&[failed]);
        worker_config(queues, failed, &events)
    }

    /// Takes over what `other` owns (its connection died in a broker restart).
    pub fn adopt(&self, other: &Broker) {
        self.owned.adopt(&other.owned);
    }

    /// A unique events exchange name (its queue has the same name), both deleted later, with
    /// the batches queue named after it (which every recorder declares).
    pub fn events_exchange(&self) -> String {
        let events = unique("events");
        self.owned.queue(&events);
        self.owned.queue(&format!("{events}.batches"));
        self.owned.exchange(&events);
        events
    }

    /// Messages ready in `queue` (0 if it does not exist).
    pub async fn ready(&self, queue: &str) -> u32 {
        self.depth(queue).await.map_or(0, |d| d.ready)
    }

    /// Consumers on `queue` (0 if it does not exist).
    pub async fn consumers(&self, queue: &str) -> u32 {
        self.depth(queue).await.map_or(0, |d| d.consumers)
    }

    async fn depth(&self, queue: &str) -> Option<palermo::admin::topology::QueueDepth> {
        palermo::admin::topology::inspect(&self.connection, queue)
            .await
            .ok()
            .flatten()
    }

    /// A new channel of the test's connection, for a library call that takes one.
    pub async fn channel(&self) -> lapin::Channel {
        self.connection.create_channel().await.expect("channel")
    }

    /// Takes every message now in `queue` (acked), with its properties.
    pub async fn drain(&self, queue: &str) -> Vec<(BasicProperties, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(msg) = self
            .channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
        {
            out.push((msg.delivery.properties.clone(), msg.delivery.data.clone()));
        }
        out
    }

    /// Publishes straight onto `queue` through the palermo exchange, bypassing the client.
    pub async fn publish_raw(&self, queue: &str, body: &[u8], props: BasicProperties) {
        self.channel
            .basic_publish(
                palermo::admin::topology::EXCHANGE.into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }

    /// Deletes now what it owns (dropping it does the same on a connection of its own).
    pub async fn cleanup(&self) {
        self.owned.delete_now(&self.connection).await;
    }
}

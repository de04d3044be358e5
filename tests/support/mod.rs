//! Shared helpers of the end-to-end tests: unique names, a broker connection, queue depths,
//! in-process workers, and cleanup of what a test created (and nothing else).
#![allow(dead_code)]

use std::{future::Future, time::Duration};

use lapin::{
    options::{QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
    BasicProperties, Channel, Connection, ConnectionProperties,
};
use palermo::{shutdown, Worker, WorkerConfig};

/// The broker the tests use: `PALERMO_AMQP_URL` or the local default.
pub fn amqp_url() -> String {
    std::env::var("PALERMO_AMQP_URL").unwrap_or_else(|_| palermo::DEFAULT_AMQP_URL.to_string())
}

/// `prefix.<uuid>`: a queue name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("test.{prefix}.{}", uuid::Uuid::new_v4().simple())
}

/// A raw AMQP connection for inspecting and cleaning up.
pub struct Broker {
    pub connection: Connection,
    pub channel: Channel,
    created: std::sync::Mutex<Vec<String>>,
}

impl Broker {
    pub async fn connect() -> Broker {
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect(
                "RabbitMQ must be running for the end-to-end tests (scripts/broker.sh starts it)",
            );
        let channel = connection.create_channel().await.expect("channel");
        Broker {
            connection,
            channel,
            created: Default::default(),
        }
    }

    /// Remembers queues to delete at [`Broker::cleanup`].
    pub fn track(&self, queues: &[&str]) {
        let mut created = self.created.lock().expect("lock");
        created.extend(queues.iter().map(|q| q.to_string()));
    }

    /// Messages ready in `queue` (0 if it does not exist).
    pub async fn ready(&self, queue: &str) -> u32 {
        let channel = self.connection.create_channel().await.expect("channel");
        match channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
        {
            Ok(q) => q.message_count(),
            Err(_) => 0,
        }
    }

    /// Consumers on `queue`.
    pub async fn consumers(&self, queue: &str) -> u32 {
        let channel = self.connection.create_channel().await.expect("channel");
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map(|q| q.consumer_count())
            .unwrap_or(0)
    }

    /// Takes every message now in `queue` (acked), with its properties.
    pub async fn drain(&self, queue: &str) -> Vec<(BasicProperties, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(msg) = self
            .channel
            .basic_get(
                queue.into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .expect("basic.get")
        {
            out.push((msg.delivery.properties.clone(), msg.delivery.data.clone()));
        }
        out
    }

    /// Deletes the queues this test tracked.
    pub async fn cleanup(&self) {
        let queues = std::mem::take(&mut *self.created.lock().expect("lock"));
        for queue in queues {
            let _ = self
                .channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
}

/// Waits until `check` is true, polling every 20 ms; panics with `what` after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A worker running in this process; stop it with [`RunningWorker::stop`].
pub struct RunningWorker {
    trigger: shutdown::Trigger,
    handle: tokio::task::JoinHandle<Result<(), palermo::Error>>,
}

impl RunningWorker {
    /// Starts a worker on `queues` with its own failed queue `failed`.
    pub fn start(queues: &[&str], failed: &str, concurrency: usize) -> RunningWorker {
        let mut config = WorkerConfig::new(queues.iter().copied());
        config.amqp_url = amqp_url();
        config.failed_queue = failed.to_string();
        config.concurrency = concurrency;
        Self::start_with(Worker::builder(config))
    }

    pub fn start_with(builder: palermo::worker::WorkerBuilder) -> RunningWorker {
        let worker = builder.build().expect("worker config");
        let (trigger, shutdown) = shutdown::channel();
        let handle = tokio::spawn(worker.run(shutdown));
        RunningWorker { trigger, handle }
    }

    /// Stops it gracefully and waits.
    pub async fn stop(self) {
        self.trigger.stop();
        self.handle
            .await
            .expect("worker task")
            .expect("worker ended with an error");
    }
}

//! Shared helpers of the end-to-end tests: unique names, a broker connection, queue depths,
//! in-process workers, and cleanup of what a test created (and nothing else).
#![allow(dead_code)]

pub mod process;

use std::{future::Future, time::Duration};

use lapin::{
    options::QueueDeleteOptions, BasicProperties, Channel, Connection, ConnectionProperties,
};
use palermo::{shutdown, WorkerConfig};

/// The broker the tests use: `PALERMO_AMQP_URL` or the local default.
pub fn amqp_url() -> String {
    std::env::var("PALERMO_AMQP_URL").unwrap_or_else(|_| palermo::DEFAULT_AMQP_URL.to_string())
}

/// The queue type the tests declare: `PALERMO_TEST_QUEUE_TYPE=quorum` runs them on quorum
/// queues (scripts/test.sh does, for a second pass over the core suites).
pub fn queue_type() -> palermo::admin::topology::QueueType {
    std::env::var("PALERMO_TEST_QUEUE_TYPE")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_default()
}

/// A client of the test broker declaring queues of [`queue_type`].
pub async fn client() -> palermo::Client {
    palermo::Client::connect_with(&amqp_url(), queue_type())
        .await
        .expect("client")
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
    exchanges: std::sync::Mutex<Vec<String>>,
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
            exchanges: Default::default(),
        }
    }

    /// Remembers queues to delete at [`Broker::cleanup`].
    pub fn track(&self, queues: &[&str]) {
        let mut created = self.created.lock().expect("lock");
        created.extend(queues.iter().map(|q| q.to_string()));
    }

    /// A worker configuration for this test: its queues, its own failed queue, its own
    /// events exchange (and queue), all deleted at [`Broker::cleanup`].
    pub fn worker_config(&self, queues: &[&str], failed: &str) -> WorkerConfig {
        let events = self.events_exchange();
        self.track(queues);
        self.track(&[failed]);
        let mut config = WorkerConfig::new(queues.iter().copied());
        config.amqp_url = amqp_url();
        config.failed_queue = failed.to_string();
        config.events_exchange = events;
        config.queue_type = queue_type();
        config
    }

    /// Takes over what `other` tracked (its connection died in a broker restart).
    pub fn adopt(&self, other: &Broker) {
        let queues = std::mem::take(&mut *other.created.lock().expect("lock"));
        self.created.lock().expect("lock").extend(queues);
        let exchanges = std::mem::take(&mut *other.exchanges.lock().expect("lock"));
        self.exchanges.lock().expect("lock").extend(exchanges);
    }

    /// A unique events exchange name (its queue has the same name), both deleted at cleanup.
    pub fn events_exchange(&self) -> String {
        let events = unique("events");
        self.track(&[&events]);
        self.exchanges.lock().expect("lock").push(events.clone());
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

    /// Deletes the queues and exchanges this test tracked.
    pub async fn cleanup(&self) {
        let exchanges = std::mem::take(&mut *self.exchanges.lock().expect("lock"));
        for exchange in exchanges {
            let _ = self
                .channel
                .exchange_delete(exchange.as_str().into(), Default::default())
                .await;
        }
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
    pub fn start_with(builder: palermo::WorkerBuilder) -> RunningWorker {
        let worker = builder.build().expect("worker config");
        let (trigger, shutdown) = shutdown::channel();
        let handle = tokio::spawn(async move {
            let result = worker.run(shutdown).await;
            if let Err(e) = &result {
                eprintln!("test worker stopped with an error: {e}");
            }
            result
        });
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

// Broker restarts, for the disruptive tests only (tests/disruptive_*.rs, run one at a time
// after every other test). `PALERMO_RABBITMQ_NODE` names the node to restart when it is not
// the default one (e.g. a private node on another port, with `PALERMO_AMQP_URL` pointing at
// it).

/// Runs `rabbitmqctl` on the test broker's node.
pub fn rabbitmqctl(args: &[&str]) -> std::io::Result<std::process::Output> {
    let mut command = std::process::Command::new("rabbitmqctl");
    if let Ok(node) = std::env::var("PALERMO_RABBITMQ_NODE") {
        command.args(["-n", &node]);
    }
    command.args(args).output()
}

/// Host and port of [`amqp_url`].
fn broker_address() -> (String, u16) {
    let uri: lapin::uri::AMQPUri = amqp_url().parse().expect("PALERMO_AMQP_URL parses");
    (uri.authority.host, uri.authority.port)
}

/// Whether something accepts TCP connections on the broker's port.
fn broker_port_answers() -> bool {
    use std::net::ToSocketAddrs;
    let (host, port) = broker_address();
    let Ok(addresses) = (host.as_str(), port).to_socket_addrs() else {
        return false;
    };
    addresses.into_iter().any(|address| {
        std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok()
    })
}

/// Starts RabbitMQ again if it is stopped (the app with `start_app`, or the whole node with
/// `rabbitmq-server -detached` when the node is down) and waits up to 90 s for its port.
/// Blocking; safe to call when it runs already.
pub fn ensure_broker_running() {
    if broker_port_answers() {
        return;
    }
    let app_started = rabbitmqctl(&["start_app"]).is_ok_and(|out| out.status.success());
    if !app_started {
        eprintln!("[broker guard] the node is down; starting rabbitmq-server -detached");
        let _ = std::process::Command::new("rabbitmq-server")
            .arg("-detached")
            .status();
        let _ = rabbitmqctl(&["await_startup", "--timeout", "90"]);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !broker_port_answers() {
        if std::time::Instant::now() > deadline {
            eprintln!("[broker guard] RabbitMQ does not answer; run scripts/broker.sh");
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Leaves the broker running whatever happens to the test: dropping it (also while a panic
/// unwinds) calls [`ensure_broker_running`]. Create one before [`restart_broker`].
#[must_use = "the guard starts the broker again when dropped"]
pub struct BrokerGuard(());

impl BrokerGuard {
    pub fn new() -> BrokerGuard {
        BrokerGuard(())
    }
}

impl Drop for BrokerGuard {
    fn drop(&mut self) {
        ensure_broker_running();
    }
}

/// Restarts RabbitMQ: `rabbitmqctl stop_app` (every connection closes, every queue process
/// stops) then `start_app` (durable queues and persistent messages are recovered from disk),
/// then waits until an AMQP connection succeeds. Returns how long the broker was away.
pub async fn restart_broker() -> Duration {
    let started = std::time::Instant::now();
    tokio::task::spawn_blocking(|| {
        let stop = rabbitmqctl(&["stop_app"]).expect("rabbitmqctl stop_app runs");
        assert!(
            stop.status.success(),
            "rabbitmqctl stop_app failed: {}",
            String::from_utf8_lossy(&stop.stderr)
        );
        let start = rabbitmqctl(&["start_app"]).expect("rabbitmqctl start_app runs");
        assert!(
            start.status.success(),
            "rabbitmqctl start_app failed: {}",
            String::from_utf8_lossy(&start.stderr)
        );
    })
    .await
    .expect("restart task");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        match Connection::connect(&amqp_url(), ConnectionProperties::default()).await {
            Ok(connection) => {
                let _ = connection.close(200, "broker is back".into()).await;
                return started.elapsed();
            }
            Err(e) if tokio::time::Instant::now() > deadline => {
                panic!("RabbitMQ did not come back within 90 s of a restart: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

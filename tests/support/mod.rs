//! Shared helpers of the end-to-end tests. [`Rig`] is where a test starts: its own queues
//! (unique names), client and workers, all deleted or stopped when it is dropped, also when
//! the test fails. The rest: a raw broker connection for depths and hand-made messages
//! ([`Broker`]), waiting on a condition ([`eventually`]), the wire format by hand ([`wire`]),
//! the delay layout ([`delay`]), worker processes ([`process`]) and broker restarts.
//!
//! The tests reach the library's internals (topology, wire headers, the delay layout, broker
//! connections) only through these files, so that the internals can move without touching
//! the tests themselves.
// Each test file uses a part of this module.
#![allow(dead_code, unused_imports)]

pub mod alarm;
mod broker;
pub mod chaos;
pub mod cleanup;
pub mod cluster;
pub mod delay;
pub mod limits;
pub mod policy;
pub mod process;
pub mod python;
mod restart;
mod rig;
mod running;
pub mod ticks;
pub mod wire;

use std::{future::Future, time::Duration};

pub use broker::Broker;
/// A job by name and raw body (`palermo enqueue`, other languages), and the worker's stop
/// signal: library paths the tests name, re-exported here so they change in one place.
pub use palermo::{admin::RawJob, shutdown};
pub use restart::{ensure_broker_running, rabbitmqctl, restart_broker, BrokerGuard};
pub use rig::{Rig, WAIT};
pub use running::RunningWorker;

/// The broker the tests use: `PALERMO_AMQP_URL`, else the one [`broker_version`] names.
pub fn amqp_url() -> String {
    std::env::var("PALERMO_AMQP_URL").unwrap_or_else(|_| broker_version().amqp_url().to_string())
}

/// The broker under test: `PALERMO_TEST_BROKER=4.0` names scripts/rabbitmq4.sh's RabbitMQ
/// 4.0 node on 5700 (scripts/matrix.sh runs the suites on both), anything else or nothing the
/// 3.10 broker on 5672. It picks the default URL and where `rabbitmqctl` runs.
pub fn broker_version() -> BrokerVersion {
    match std::env::var("PALERMO_TEST_BROKER").as_deref() {
        Ok("4.0") | Ok("4") => BrokerVersion::V4_0,
        _ => BrokerVersion::V3_10,
    }
}

/// The brokers the tests know how to reach (see [`broker_version`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerVersion {
    /// Debian 12's RabbitMQ 3.10 on 127.0.0.1:5672 (scripts/broker.sh).
    V3_10,
    /// Debian 13's RabbitMQ 4.0 on 127.0.0.1:5700 (scripts/rabbitmq4.sh).
    V4_0,
}

impl BrokerVersion {
    /// The broker's AMQP URL when `PALERMO_AMQP_URL` is unset.
    pub fn amqp_url(self) -> &'static str {
        match self {
            BrokerVersion::V3_10 => palermo::DEFAULT_AMQP_URL,
            BrokerVersion::V4_0 => "amqp://guest:guest@127.0.0.1:5700/%2f",
        }
    }
}

/// The queue type the tests declare: `PALERMO_TEST_QUEUE_TYPE=quorum` runs them on quorum
/// queues (scripts/test.sh does, for a second pass over the core suites).
pub fn queue_type() -> palermo::admin::topology::QueueType {
    std::env::var("PALERMO_TEST_QUEUE_TYPE")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_default()
}

/// The test deployment: the test broker, queues of [`queue_type`], the default names.
pub fn deployment() -> palermo::Deployment {
    palermo::Deployment {
        queue_type: queue_type(),
        ..palermo::Deployment::new(amqp_url())
    }
}

/// A client of the test [`deployment`].
pub async fn client() -> palermo::Client {
    client_with(palermo::ClientConfig::new(deployment())).await
}

/// A client with `config`.
pub async fn client_with(config: palermo::ClientConfig) -> palermo::Client {
    palermo::Client::connect_with(&config)
        .await
        .expect("client")
}

/// `prefix.<uuid>`: a queue name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("test.{prefix}.{}", uuid::Uuid::new_v4().simple())
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

/// Logs of the library on stderr (`RUST_LOG`), for a test that wants to show them.
pub fn init_tracing() {
    palermo::cli::init_tracing();
}

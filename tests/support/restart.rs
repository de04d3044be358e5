//! Broker restarts, for the disruptive tests only (tests/disruptive/, run one at a time
//! after every other test), and the guard that leaves the broker running whatever happens.
//! `PALERMO_RABBITMQ_NODE` names the node to restart when it is not the default one (e.g. a
//! private node on another port, with `PALERMO_AMQP_URL` pointing at it);
//! `PALERMO_TEST_BROKER=4.0` makes it the 4.0 node of scripts/rabbitmq4.sh.

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

use super::{amqp_url, broker_version, BrokerVersion};

/// scripts/rabbitmq4.sh of this checkout: its `ctl` runs the 4.0 root's own `rabbitmqctl`
/// on the 4.0 node, and `up` starts that node.
const RABBITMQ4: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rabbitmq4.sh");

/// Runs `rabbitmqctl` on the test broker's node (the host's for 3.10, the 4.0 root's for
/// 4.0: each version's CLI speaks to its own servers only).
pub fn rabbitmqctl(args: &[&str]) -> std::io::Result<std::process::Output> {
    let mut command = match broker_version() {
        BrokerVersion::V3_10 => std::process::Command::new("rabbitmqctl"),
        BrokerVersion::V4_0 => {
            let mut command = std::process::Command::new(RABBITMQ4);
            command.arg("ctl");
            command
        }
    };
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
        match broker_version() {
            BrokerVersion::V3_10 => {
                eprintln!("[broker guard] the node is down; starting rabbitmq-server -detached");
                let _ = std::process::Command::new("rabbitmq-server")
                    .arg("-detached")
                    .status();
            }
            BrokerVersion::V4_0 => {
                eprintln!("[broker guard] the node is down; starting scripts/rabbitmq4.sh up");
                let _ = std::process::Command::new(RABBITMQ4).arg("up").status();
            }
        }
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

//! The three-node test cluster of `scripts/cluster.sh`, for tests/cluster/: the test
//! brings it up, kills and starts its nodes, reads which node leads a quorum queue, and
//! dropping the [`Cluster`] (also while a panic unwinds) runs `scripts/cluster.sh down`, so
//! no node outlives the test whatever happens.
//!
//! The cluster is shared by everyone on the machine: [`Cluster::up`] holds
//! `flock -x /tmp/palermo-cluster.lock` until the cluster is down again, so do not run these
//! tests under that lock yourself.

use std::{
    fs::File,
    os::fd::AsRawFd,
    process::{Command, Output},
    sync::Arc,
    time::{Duration, Instant},
};

use lapin::{options::BasicGetOptions, Connection, ConnectionProperties};

use super::chaos::random;

/// `scripts/cluster.sh` of this checkout.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh");
/// The lock every user of the cluster takes.
const LOCK: &str = "/tmp/palermo-cluster.lock";
/// The nodes, numbered as the script numbers them.
pub const NODES: [usize; 3] = [1, 2, 3];

/// The running cluster; taken down when dropped.
pub struct Cluster {
    _lock: File,
}

/// Runs `scripts/cluster.sh args…`; panics with its output if it fails.
fn script(args: &[&str]) -> Output {
    let out = Command::new(SCRIPT)
        .args(args)
        .output()
        .expect("run scripts/cluster.sh");
    assert!(
        out.status.success(),
        "scripts/cluster.sh {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Cluster {
    /// Takes the cluster lock and brings the three nodes up (blocking; about 30 s).
    pub fn up() -> Cluster {
        let lock = File::options()
            .create(true)
            .append(true)
            .open(LOCK)
            .expect("open the cluster lock");
        // SAFETY: flock(2) on a descriptor this File owns; released when it is closed.
        let locked = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(locked, 0, "flock {LOCK}");
        // Owned from here: a failing `up` still runs `down` when the guard drops.
        let cluster = Cluster { _lock: lock };
        let started = Instant::now();
        script(&["up"]);
        eprintln!("[cluster] up in {:?}", started.elapsed());
        cluster
    }

    /// Node `n`'s AMQP URL.
    pub fn url(&self, n: usize) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", 5680 + n)
    }

    /// Every node's URL, comma-separated (`scripts/cluster.sh urls`).
    pub fn urls(&self) -> String {
        NODES.map(|n| self.url(n)).join(",")
    }

    /// SIGKILLs node `n` and waits until its VM is gone.
    pub fn kill(&self, n: usize) {
        script(&["kill", &n.to_string()]);
    }

    /// Starts node `n` again and waits until it is back in the cluster and answers.
    pub fn start(&self, n: usize) {
        script(&["start", &n.to_string()]);
    }

    /// `rabbitmqctl` on node `n`; `None` if it failed (the node is down, say).
    pub fn ctl(&self, n: usize, args: &[&str]) -> Option<String> {
        let out = Command::new(SCRIPT)
            .args(["ctl", &n.to_string()])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The node that leads quorum queue `queue`, asked of `via`; `None` while it has none.
    pub fn leader(&self, via: usize, queue: &str) -> Option<usize> {
        self.queue_node(via, queue, "leader")
    }

    /// The node of the connection that owns exclusive queue `queue` (where the queue lives),
    /// asked of `via`; `None` while there is no such queue. (3.10 lists no node for a classic
    /// queue; its owner's pid is the connection's, whose port names the node.)
    pub fn node_of_queue(&self, via: usize, queue: &str) -> Option<usize> {
        let rows = |args: &[&str]| -> Option<Vec<serde_json::Value>> {
            serde_json::from_str(&self.ctl(via, args)?).ok()
        };
        let queues = rows(&[
            "list_queues",
            "name",
            "owner_pid",
            "--formatter",
            "json",
            "-q",
        ])?;
        let owner = queues
            .iter()
            .find(|row| row["name"] == queue)?
            .get("owner_pid")?
            .clone();
        let connections = rows(&[
            "list_connections",
            "pid",
            "port",
            "--formatter",
            "json",
            "-q",
        ])?;
        let port = connections
            .iter()
            .find(|row| row["pid"] == owner)?
            .get("port")?
            .as_u64()?;
        NODES.into_iter().find(|&n| port == 5680 + n as u64)
    }

    /// The node in `list_queues`' column `column` (`leader`, `node`) for `queue`.
    fn queue_node(&self, via: usize, queue: &str, column: &str) -> Option<usize> {
        let json = self.ctl(
            via,
            &["list_queues", "name", column, "--formatter", "json", "-q"],
        )?;
        let rows: Vec<serde_json::Value> = serde_json::from_str(&json).ok()?;
        let node = rows
            .iter()
            .find(|row| row["name"] == queue)?
            .get(column)?
            .as_str()?
            .to_string();
        NODES
            .into_iter()
            .find(|n| node == format!("palermo-c{n}@localhost"))
    }

    /// [`Cluster::leader`], waiting up to 30 s for the queue to have one.
    pub async fn await_leader(&self, via: usize, queue: &str) -> usize {
        poll(&format!("{queue} has no leader"), || {
            self.leader(via, queue)
        })
        .await
    }

    /// The node a connection whose client properties mention `marker` (its connection name:
    /// `palermo client`, or a worker's identity, which holds its queues) is connected to,
    /// asked of `via`; `None` while there is none.
    pub fn node_of_connection(&self, via: usize, marker: &str) -> Option<usize> {
        let json = self.ctl(
            via,
            &[
                "list_connections",
                "port",
                "client_properties",
                "--formatter",
                "json",
                "-q",
            ],
        )?;
        let rows: Vec<serde_json::Value> = serde_json::from_str(&json).ok()?;
        let port = rows
            .iter()
            .find(|row| row["client_properties"].to_string().contains(marker))?
            .get("port")?
            .as_u64()?;
        NODES.into_iter().find(|&n| port == 5680 + n as u64)
    }

    /// [`Cluster::node_of_connection`], waiting up to 30 s for the connection.
    pub async fn await_connection(&self, via: usize, marker: &str) -> usize {
        poll(&format!("no connection of {marker}"), || {
            self.node_of_connection(via, marker)
        })
        .await
    }

    /// Prints the cluster's queues that hold messages (waiting, unacked, or expired and waiting
    /// for the dead-letter worker, which `list_queues` does not show on 3.10) and each node's
    /// dead-letter workers.
    pub fn print_where_messages_are(&self) {
        const QUEUES: &str = "[{element(4, amqqueue:get_name(Q)), rabbit_quorum_queue:info(Q, \
            [messages, messages_ready, messages_unacknowledged, messages_dlx, consumers, leader])} \
            || Q <- rabbit_amqqueue:list(), amqqueue:get_type(Q) =:= rabbit_quorum_queue, \
            rabbit_quorum_queue:info(Q, [messages]) =/= [{messages, 0}]].";
        for n in NODES {
            // A node knows the counts of the queues it leads only.
            let queues = self.ctl(n, &["eval", QUEUES]);
            eprintln!(
                "quorum queues led by palermo-c{n} holding messages: {}",
                queues.unwrap_or_default()
            );
            let columns = ["name", "consumer_count", "messages_unacknowledged"];
            let channels = self.ctl(
                n,
                &[&["list_channels", "--no-table-headers"][..], &columns].concat(),
            );
            let holding: Vec<String> = channels
                .unwrap_or_default()
                .lines()
                .filter(|l| l.split('\t').nth(2).is_some_and(|u| u.trim() != "0"))
                .map(str::to_string)
                .collect();
            eprintln!("channels on palermo-c{n} holding unacked messages: {holding:?}");
            let workers = self.ctl(
                n,
                &["eval", "supervisor:count_children(rabbit_fifo_dlx_sup)."],
            );
            eprintln!(
                "dead-letter workers on palermo-c{n}: {}",
                workers.unwrap_or_default()
            );
        }
    }

    /// Connects to node `n`.
    pub async fn connect(&self, n: usize) -> Connection {
        Connection::connect(&self.url(n), ConnectionProperties::default())
            .await
            .expect("connect to a cluster node")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let started = Instant::now();
        match Command::new(SCRIPT).arg("down").status() {
            Ok(status) if status.success() => {
                eprintln!("[cluster] down in {:?}", started.elapsed())
            }
            other => eprintln!("[cluster] scripts/cluster.sh down failed: {other:?}"),
        }
    }
}

/// SIGKILLs node `n`, waits 1 to 3 s, starts it again; how long it was away.
async fn kill_and_start(cluster: &Arc<Cluster>, n: usize) -> Duration {
    let started = Instant::now();
    let cluster = Arc::clone(cluster);
    tokio::task::spawn_blocking(move || {
        cluster.kill(n);
        std::thread::sleep(Duration::from_millis(random(1_000, 3_000)));
        cluster.start(n);
    })
    .await
    .expect("kill and start");
    started.elapsed()
}

/// The chaos of the cluster tests: twice, after 4 to 8 s, the node leading quorum queue
/// `queue` is SIGKILLed and started again ([`kill_and_start`]), so the second kill hits the
/// leader elected after the first. The nodes killed, in order; each kill is logged under
/// `test` (the test's name in its output).
pub async fn kill_leader_twice(cluster: &Arc<Cluster>, queue: &str, test: &str) -> Vec<usize> {
    let mut kills = Vec::new();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(random(4_000, 8_000))).await;
        // Asked of a node other than the one just started again, which may still be joining.
        let via = kills
            .last()
            .map_or(1, |&last| if last == 1 { 2 } else { 1 });
        let leader = cluster.await_leader(via, queue).await;
        let at = chrono::Utc::now();
        let away = kill_and_start(cluster, leader).await;
        eprintln!(
            "{test}: killed palermo-c{leader}, the leader of {queue}, at {at}; back after {away:?}"
        );
        kills.push(leader);
    }
    kills
}

/// Takes every message now in `queue` over `connection` (acked); their `message_id`s.
pub async fn take_ids(connection: &Connection, queue: &str) -> Vec<String> {
    let channel = connection.create_channel().await.expect("channel");
    let mut ids = Vec::new();
    while let Some(msg) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
    {
        if let Some(id) = msg.delivery.properties.message_id() {
            ids.push(id.to_string());
        }
    }
    let _ = channel.close(200, "taken".into()).await;
    ids
}

/// Asks `probe` every 250 ms until it answers, for up to 30 s; past that, fails with
/// `failure` ("… after 30 s").
async fn poll<T>(failure: &str, probe: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(answer) = probe() {
            return answer;
        }
        assert!(Instant::now() < deadline, "{failure} after 30 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

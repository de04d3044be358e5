//! What every measurement shares: the connections, unique queue names, the workers it
//! starts, and the clean-up that removes every queue the run created.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use lapin::{
    options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
    Channel, Connection, ConnectionProperties,
};

use crate::{child::WorkerProcess, jobs, nodes::Nodes, raw};

/// Which consumer drains a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// A Palermo worker (`palermo-bench worker`).
    Palermo = 0,
    /// Plain lapin consumers (`palermo-bench raw-worker`) with a per-consumer prefetch
    /// limit, what a hand-written consumer does: the yardstick.
    Raw = 1,
    /// The same with a channel-wide (global) limit, the cost of which the table shows too.
    RawGlobal = 2,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Palermo => "palermo",
            Side::Raw => "raw",
            Side::RawGlobal => "raw-global",
        }
    }

    /// The three sides, in an order that turns with the repetition.
    pub fn all_in_turn(rep: usize) -> [Side; 3] {
        let mut all = [Side::Palermo, Side::Raw, Side::RawGlobal];
        all.rotate_left(rep % 3);
        all
    }

    /// Both sides, in an order that alternates with the repetition, so that neither always
    /// runs first on a machine whose speed drifts.
    pub fn in_turn(rep: usize) -> [Side; 2] {
        if rep % 2 == 0 {
            [Side::Palermo, Side::Raw]
        } else {
            [Side::Raw, Side::Palermo]
        }
    }
}

/// The run's shared state.
pub struct Bench {
    /// Jobs per enqueue and drain measurement.
    pub jobs: u64,
    /// Probes per latency measurement.
    pub latency_jobs: usize,
    /// The nodes and the queue type.
    pub nodes: Nodes,
    pub client: palermo::Client,
    pub raw: raw::Publisher,
    connection: Connection,
    admin: Channel,
    run_id: String,
    failed_queue: String,
    /// The events exchange (and queue of the same name) the Palermo workers send heartbeats
    /// to, when their version has heartbeats.
    events: Option<String>,
    logs: PathBuf,
    created: Mutex<Vec<String>>,
}

impl Bench {
    /// Connects a Palermo client and a raw lapin connection to the first of `nodes`.
    pub async fn connect(nodes: Nodes, jobs: u64, latency_jobs: usize) -> anyhow::Result<Self> {
        let amqp_url = nodes.first();
        let deployment = palermo::Deployment {
            queue_type: nodes.queue_type,
            ..palermo::Deployment::new(amqp_url)
        };
        let client = palermo::Client::connect_with(&palermo::ClientConfig::new(deployment))
            .await
            .context("connecting the Palermo client")?;
        let connection = Connection::connect(
            amqp_url,
            ConnectionProperties::default().with_connection_name("palermo-bench".into()),
        )
        .await
        .context("connecting the raw lapin connection")?;
        let raw = raw::Publisher::open(&connection).await?;
        let admin = connection
            .create_channel()
            .await
            .context("opening the admin channel")?;
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let logs = std::env::temp_dir().join(format!("palermo-bench-{run_id}"));
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        let events =
            worker_has_flag("--events-exchange")?.then(|| format!("palermo-bench-{run_id}.events"));
        let bench = Self {
            jobs,
            latency_jobs,
            nodes,
            client,
            raw,
            connection,
            admin,
            failed_queue: format!("palermo-bench-{run_id}.failed"),
            events,
            run_id,
            logs,
            created: Mutex::new(Vec::new()),
        };
        let failed = bench.failed_queue.clone();
        bench.remember(&failed);
        if let Some(events) = bench.events.clone() {
            bench.remember(&events);
        }
        Ok(bench)
    }

    /// Declares (durable, bound to `palermo`, as Palermo does) a queue unique to this run.
    pub async fn queue(&self, what: &str) -> anyhow::Result<String> {
        let queue = format!("palermo-bench-{}.{what}", self.run_id);
        self.remember(&queue);
        palermo::admin::topology::declare_queue(&self.admin, &queue, self.nodes.queue_type)
            .await
            .with_context(|| format!("declaring {queue}"))?;
        Ok(queue)
    }

    fn remember(&self, queue: &str) {
        self.created
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(queue.to_string());
    }

    /// Deletes a queue of this run, with whatever it still holds.
    pub async fn delete(&self, queue: &str) -> anyhow::Result<()> {
        self.admin
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
            .with_context(|| format!("deleting {queue}"))?;
        self.created
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|q| q != queue);
        Ok(())
    }

    /// Starts a worker of `side` on `queue` with `concurrency` slots of prefetch 1; for
    /// Palermo, failed jobs go to this run's own failed queue.
    pub fn spawn_worker(
        &self,
        side: Side,
        queue: &str,
        concurrency: usize,
        expect: u64,
    ) -> anyhow::Result<WorkerProcess> {
        self.spawn_worker_with(side, queue, concurrency, 1, expect, None)
    }

    /// [`Bench::spawn_worker`] with `prefetch` deliveries per slot or channel and, for
    /// Palermo, a `--limit` (docs/limits.md).
    pub fn spawn_worker_with(
        &self,
        side: Side,
        queue: &str,
        concurrency: usize,
        prefetch: u16,
        expect: u64,
        limit: Option<&str>,
    ) -> anyhow::Result<WorkerProcess> {
        let exe = std::env::current_exe().context("finding this executable")?;
        let mut args: Vec<String> = match side {
            Side::Palermo => vec![
                jobs::WORKER_COMMAND.into(),
                "--queues".into(),
                queue.into(),
                "--concurrency".into(),
                concurrency.to_string(),
                "--failed-queue".into(),
                self.failed_queue.clone(),
                "--shutdown-timeout".into(),
                "5".into(),
            ],
            Side::Raw | Side::RawGlobal => vec![
                raw::WORKER_COMMAND.into(),
                "--queue".into(),
                queue.into(),
                "--channels".into(),
                concurrency.to_string(),
                "--expect".into(),
                expect.to_string(),
            ],
        };
        args.extend(self.nodes.worker_args());
        if side == Side::Palermo {
            args.extend(self.nodes.queue_type_args());
        }
        if let (Side::Palermo, Some(events)) = (side, &self.events) {
            args.extend(["--events-exchange".into(), events.clone()]);
        }
        if prefetch != 1 {
            args.extend(["--prefetch".into(), prefetch.to_string()]);
        }
        if let (Side::Palermo, Some(limit)) = (side, limit) {
            args.extend(["--limit".into(), limit.to_string()]);
        }
        if side == Side::RawGlobal {
            args.push("--global-qos".into());
        }
        let log = self.logs.join(format!("{queue}.log"));
        // A profiling hook: `PALERMO_BENCH_WRAPPER="valgrind --tool=callgrind"` runs each
        // worker under that command. It must exec the worker in its own process (valgrind
        // does; `perf record` does not: attach perf to the pid instead).
        match std::env::var("PALERMO_BENCH_WRAPPER") {
            Ok(wrapper) if !wrapper.trim().is_empty() => {
                let mut words = wrapper.split_whitespace().map(String::from);
                let program = words.next().unwrap_or_default();
                let mut all: Vec<String> = words.collect();
                all.push(exe.display().to_string());
                all.extend(args);
                WorkerProcess::spawn(Path::new(&program), &all, log)
            }
            _ => WorkerProcess::spawn(&exe, &args, log),
        }
    }

    /// Waits until `worker` has `consumers` consumers on `queue`, i.e. it is ready for jobs.
    pub async fn wait_for_consumers(
        &self,
        worker: &mut WorkerProcess,
        queue: &str,
        consumers: u32,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            worker.check_alive()?;
            let (_, consumer_count) = self.queue_state(queue).await?;
            if consumer_count >= consumers {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the worker on {queue} has {} of {consumers} consumers after 30 s",
                    consumer_count
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The ready messages and the consumers of `queue` (a passive declare).
    pub async fn queue_state(&self, queue: &str) -> anyhow::Result<(u32, u32)> {
        let state = self
            .admin
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("passive declare of {queue}"))?;
        Ok((state.message_count(), state.consumer_count()))
    }

    /// A new connection for the clean-up, trying for 30 s: a broker restarted under the run
    /// takes a few seconds to accept connections again.
    async fn reconnect(&self) -> lapin::Result<Connection> {
        let mut tries = 0;
        loop {
            let connected =
                Connection::connect(self.nodes.first(), ConnectionProperties::default()).await;
            match connected {
                Err(_) if tries < 15 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                connected => return connected,
            }
        }
    }

    /// Deletes every queue the run created, closes the connections and, after a clean run,
    /// the workers' logs. Best effort: it reports what it could not do.
    pub async fn finish(self, success: bool) {
        let queues = std::mem::take(
            &mut *self
                .created
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        // A fresh channel, on a fresh connection if need be: the admin channel, or the broker
        // itself (restarted under the run), may be what failed.
        let (channel, spare) = match self.connection.create_channel().await {
            Ok(channel) => (Ok(channel), None),
            Err(_) => match self.reconnect().await {
                Ok(connection) => (connection.create_channel().await, Some(connection)),
                Err(e) => (Err(e), None),
            },
        };
        match channel {
            Ok(channel) => {
                for queue in queues {
                    let deleted = channel
                        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                        .await;
                    if let Err(e) = deleted {
                        eprintln!("warning: could not delete queue {queue}: {e}");
                    }
                }
                if let Some(events) = &self.events {
                    let deleted = channel
                        .exchange_delete(events.as_str().into(), ExchangeDeleteOptions::default())
                        .await;
                    if let Err(e) = deleted {
                        eprintln!("warning: could not delete exchange {events}: {e}");
                    }
                }
            }
            Err(e) => eprintln!(
                "warning: could not delete queues {queues:?} and exchange {:?}: {e}",
                self.events
            ),
        }
        if let Some(spare) = spare {
            let _ = spare.close(200, "bench clean-up done".into()).await;
        }
        if let Err(e) = self.client.close().await {
            eprintln!("warning: closing the Palermo client: {e}");
        }
        if let Err(e) = self.connection.close(200, "bench done".into()).await {
            eprintln!("warning: closing the raw connection: {e}");
        }
        if success {
            let _ = std::fs::remove_dir_all(&self.logs);
        } else {
            eprintln!("worker logs kept in {}", self.logs.display());
        }
    }
}

/// Whether this executable's Palermo worker takes `flag`: the harness passes the flags of
/// newer Palermo versions only when they exist, so that the same harness can measure the
/// code as it was before an optimisation (docs/performance.md).
fn worker_has_flag(flag: &str) -> anyhow::Result<bool> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let help = std::process::Command::new(exe)
        .args([jobs::WORKER_COMMAND, "--help"])
        .output()
        .context("running `palermo-bench worker --help`")?;
    Ok(String::from_utf8_lossy(&help.stdout).contains(flag))
}

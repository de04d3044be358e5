//! The worker runtime: one connection, one [`slot`] per concurrency slot, and a two-phase
//! stop (quiet, then a deadline), as in Sidekiq's launcher and manager.
//!
//! ```text
//! Worker::run ── connect, declare ──┬─ slot 0: channel, qos 1, consumers ─ execute ─ ack
//!                                   ├─ slot 1: ...
//!                                   └─ on stop: cancel consumers, wait ≤ shutdown_timeout
//! ```

pub mod cli;
pub mod execute;
pub mod failure;
pub mod heartbeat;
pub mod panic;
pub(crate) mod poison;
pub mod retrying;
pub mod slot;
pub(crate) mod stats;

use std::sync::Arc;

use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::{
    broker, config::WorkerConfig, error::Error, registry::Registry, shutdown::Shutdown,
    state::StateMap, topology,
};

/// A worker, ready to run.
pub struct Worker {
    shared: Arc<Shared>,
}

/// What every slot of a worker reads.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: WorkerConfig,
    pub registry: Registry,
    pub state: Arc<StateMap>,
    /// `hostname:pid:queues`.
    pub identity: String,
    /// Counters and in-flight jobs, for heartbeats.
    pub stats: stats::Stats,
    /// The delay queues retries and snoozes go through, declared at the first one.
    pub delays: crate::delay::DelayQueues,
}

/// Builds a [`Worker`]: the configuration, the application state jobs may ask for.
pub struct WorkerBuilder {
    config: WorkerConfig,
    state: StateMap,
    registry: Option<Registry>,
}

impl Worker {
    /// Starts building a worker with this configuration.
    pub fn builder(config: WorkerConfig) -> WorkerBuilder {
        WorkerBuilder {
            config,
            state: StateMap::default(),
            registry: None,
        }
    }

    /// `hostname:pid:queues`, the worker's identity in failures, logs and heartbeats.
    pub fn identity(&self) -> &str {
        &self.shared.identity
    }

    /// Runs until `shutdown` is requested and in-flight jobs are done (or the shutdown
    /// timeout passes, leaving their messages to the broker), or until the broker
    /// connection fails.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), Error> {
        panic::install_hook();
        let config = &self.shared.config;
        let connection = broker::connect(&config.amqp_url, &self.shared.identity).await?;
        let channel = broker::confirm_channel(&connection).await?;
        topology::declare_exchange(&channel).await?;
        topology::declare_queue(&channel, &config.failed_queue, config.queue_type).await?;
        for queue in &config.queues {
            topology::declare_queue(&channel, queue, config.queue_type).await?;
        }
        info!(
            worker = %self.shared.identity,
            queues = ?config.queues,
            concurrency = config.concurrency,
            jobs = ?self.shared.registry.names(),
            "worker started"
        );

        let mut slots = JoinSet::new();
        for number in 0..config.concurrency {
            let channel = broker::confirm_channel(&connection).await?;
            let slot = slot::Slot::start(self.shared.clone(), channel, number).await?;
            slots.spawn(slot.run(shutdown.clone()));
        }

        let heart = heartbeat::start(self.shared.clone(), &connection).await?;
        let result = self.supervise(&mut slots, shutdown).await;
        heart.stop(result.is_ok()).await;
        if let Err(e) = connection.close(200, "worker stopped".into()).await {
            warn!(error = %e, "closing the broker connection failed");
        }
        info!(worker = %self.shared.identity, "worker stopped");
        result
    }

    /// Waits for every slot; a failing slot stops the worker. After a stop request, gives
    /// the slots `shutdown_timeout` to finish their jobs.
    async fn supervise(
        &self,
        slots: &mut JoinSet<Result<(), Error>>,
        mut shutdown: Shutdown,
    ) -> Result<(), Error> {
        loop {
            tokio::select! {
                joined = slots.join_next() => match joined {
                    None => return Ok(()),
                    Some(Ok(Ok(()))) => {}
                    Some(Ok(Err(e))) => {
                        error!(error = %e, "a worker slot failed; stopping");
                        slots.abort_all();
                        return Err(e);
                    }
                    Some(Err(e)) => {
                        error!(error = %e, "a worker slot panicked; stopping");
                        slots.abort_all();
                        return Err(Error::Config(format!("worker slot panicked: {e}")));
                    }
                },
                () = shutdown.requested() => break,
            }
        }
        let timeout = self.shared.config.shutdown_timeout;
        info!(
            ?timeout,
            "stopping: no new jobs; waiting for running jobs to finish"
        );
        let drained = tokio::time::timeout(timeout, async {
            while let Some(joined) = slots.join_next().await {
                if let Ok(Err(e)) = joined {
                    warn!(error = %e, "a worker slot failed while stopping");
                }
            }
        })
        .await;
        if drained.is_err() {
            warn!(
                ?timeout,
                "shutdown timeout passed with jobs still running; their messages go back to the queue"
            );
            slots.abort_all();
        }
        Ok(())
    }
}

impl WorkerBuilder {
    /// Gives jobs a value of type `T` (one per type), which they take as `State<T>`.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Uses these jobs instead of every job linked into the binary.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Validates the configuration and the job names.
    pub fn build(self) -> Result<Worker, Error> {
        self.config.validate()?;
        let registry = match self.registry {
            Some(registry) => registry,
            None => Registry::linked()?,
        };
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let identity = format!(
            "{host}:{}:{}",
            std::process::id(),
            self.config.queues.join(",")
        );
        let queue_type = self.config.queue_type;
        Ok(Worker {
            shared: Arc::new(Shared {
                config: self.config,
                registry,
                state: Arc::new(self.state),
                identity,
                stats: stats::Stats::default(),
                delays: crate::delay::DelayQueues::new(queue_type),
            }),
        })
    }
}

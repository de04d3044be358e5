//! The worker runtime: one connection, one [`slot`] per concurrency slot, and a two-phase
//! stop (quiet, then a deadline), as in Sidekiq's launcher and manager.
//!
//! ```text
//! Worker::run ── connect, declare ──┬─ slot 0: channel, qos 1, consumers ─ execute ─ ack
//!                                   ├─ slot 1: ...
//!                                   ├─ link::Keeper: connection lost → back off, reconnect,
//!                                   │    declare; each slot starts again on it (serve)
//!                                   └─ on stop: cancel consumers, wait ≤ shutdown_timeout
//! ```

mod batch;
mod cancel;
mod chain;
mod control;
pub(crate) mod decide;
mod execute;
mod failure;
mod heal;
mod heartbeat;
mod limit_gate;
mod limit_tally;
mod link;
mod panic;
mod poison;
mod recent;
mod retrying;
mod serve;
mod slot;
mod stats;
pub(crate) mod timing;

use std::sync::Arc;

use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::{
    broker, config::WorkerConfig, error::Error, registry::Registry, shutdown, shutdown::Shutdown,
    state::StateMap,
};

/// A worker, ready to run.
pub struct Worker {
    shared: Arc<Shared>,
    /// The periodic jobs this worker's scheduler enqueues (with `WorkerConfig::scheduler`).
    schedules: Vec<crate::periodic::Entry>,
}

/// What every slot of a worker reads.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: WorkerConfig,
    pub registry: Registry,
    pub state: Arc<StateMap>,
    /// `hostname:pid:queues`.
    pub identity: String,
    /// `palermo:hostname:pid`, the start of the slots' consumer tags.
    pub tag_prefix: String,
    /// Counters and in-flight jobs, for heartbeats.
    pub stats: stats::Stats,
    /// The delay queues retries and snoozes go through, declared at the first one.
    pub delays: crate::broker::delay::DelayQueues,
    /// Runs finished lately, to recognise a job delivered twice.
    pub recent: recent::Recent,
    /// Failed hand-overs: their shared backoff and log (`heal.rs`).
    pub mender: crate::worker::heal::Mender,
    /// Why the broker blocks this worker's connection (a resource alarm), while it does.
    pub blocked: crate::broker::blocked::Blocked,
    /// Hooks around every run, in registration order.
    pub middleware: crate::middleware::Stack,
    /// The jobs' fleet-wide limits and the slots this worker holds (docs/limits.md).
    pub limits: limit_gate::Limits,
    /// This run of the worker: its heartbeats' `id` and its control routing key.
    pub run_id: uuid::Uuid,
    /// What it applied of the operators' commands (paused queues, quiet, stopping).
    pub control: control::Control,
    /// The cancelled job ids it knows (`cancel.rs`).
    pub cancels: cancel::Cancels,
}

/// Builds a [`Worker`]: the configuration, the application state jobs may ask for.
///
/// ```no_run
/// use palermo::{shutdown, State, Worker, WorkerConfig};
///
/// struct Mailer {
///     from: String,
/// }
///
/// #[palermo::job(queue = "mail")]
/// async fn send_email(to: String, mailer: State<Mailer>) -> Result<(), palermo::JobError> {
///     println!("{} -> {to}", mailer.from);
///     Ok(())
/// }
///
/// # async fn run() -> Result<(), palermo::Error> {
/// let worker = Worker::builder(WorkerConfig::new(["mail"]))
///     .state(Mailer { from: "noreply@example.com".into() })
///     .build()?;
/// let (trigger, stop) = shutdown::channel();
/// tokio::spawn(async move {
///     let _ = tokio::signal::ctrl_c().await;
///     trigger.stop(); // running jobs finish (within the shutdown timeout), nothing new starts
/// });
/// worker.run(stop).await?;
/// # Ok(()) }
/// ```
pub struct WorkerBuilder {
    config: WorkerConfig,
    state: StateMap,
    registry: Option<Registry>,
    middleware: crate::middleware::Stack,
    schedules: Vec<crate::periodic::Entry>,
    /// The first invalid schedule given to the builder, reported by `build`.
    schedule_error: Option<Error>,
}

impl Worker {
    /// Starts building a worker with this configuration.
    pub fn builder(config: WorkerConfig) -> WorkerBuilder {
        WorkerBuilder {
            config,
            state: StateMap::default(),
            registry: None,
            middleware: crate::middleware::Stack::default(),
            schedules: Vec::new(),
            schedule_error: None,
        }
    }

    /// This run's id: its heartbeats' `id`, `palermo workers --json`'s `id`, and the key
    /// operators' commands are routed to it by (docs/admin.md, "Control").
    pub fn id(&self) -> uuid::Uuid {
        self.shared.run_id
    }

    /// `hostname:pid:queues`, the worker's identity in failures, logs and heartbeats.
    pub fn identity(&self) -> &str {
        &self.shared.identity
    }

    /// Runs until `shutdown` is requested and in-flight jobs are done (or the shutdown
    /// timeout passes, leaving their messages to the broker). A broker that cannot be reached
    /// or refuses the topology at start-up is an error; once started, the worker reconnects
    /// after losing the broker, for as long as it takes (see [`WorkerConfig::reconnect`]).
    pub async fn run(self, shutdown: Shutdown) -> Result<(), Error> {
        panic::install_hook();
        // The worker's own stop: the caller's, or a `stop` command (`control.rs`).
        let (stop, inner) = shutdown::channel();
        let stop = Arc::new(stop);
        let forward = {
            let (stop, shared, mut outer) = (stop.clone(), self.shared.clone(), shutdown);
            tokio::spawn(async move {
                outer.requested().await;
                shared.control.stopping();
                stop.stop();
            })
        };
        let result = self.run_until(inner, stop).await;
        forward.abort();
        result
    }

    async fn run_until(
        self,
        shutdown: Shutdown,
        stop: Arc<shutdown::Trigger>,
    ) -> Result<(), Error> {
        let config = &self.shared.config;
        let deployment = &config.deployment;
        let (url, queue_type) = (&deployment.amqp_url, deployment.queue_type);
        crate::broker::priority::check_broker_at(url, queue_type, &deployment.priorities).await?;
        let connection = link::connect_at_start(&self.shared).await?;
        info!(
            worker = %self.shared.identity,
            queues = ?config.queues,
            concurrency = config.concurrency,
            jobs = ?self.shared.registry.names(),
            limits = ?self.shared.limits.all(),
            "worker started"
        );

        let (keeper, link) = link::Keeper::new(self.shared.clone(), connection);
        let listener = tokio::spawn(control::listen(
            self.shared.clone(),
            link.clone(),
            stop,
            shutdown.clone(),
        ));
        let cancellations = tokio::spawn(cancel::listen(
            self.shared.clone(),
            link.clone(),
            shutdown.clone(),
        ));
        let started = async {
            let heart = heartbeat::start(self.shared.clone(), link.clone()).await?;
            let mut slots = JoinSet::new();
            for number in 0..config.concurrency {
                let connection = keeper.connection();
                let channel = broker::confirm_channel(&connection).await?;
                let slot = slot::Slot::start(self.shared.clone(), channel, connection, number);
                let slot = slot.await?;
                let (shared, link) = (self.shared.clone(), link.clone());
                slots.spawn(serve::serve(shared, link, number, slot, shutdown.clone()));
            }
            Ok::<_, Error>((heart, slots))
        };
        let (heart, mut slots) = match started.await {
            Ok(started) => started,
            Err(e) => {
                listener.abort();
                cancellations.abort();
                link::close(&keeper.connection(), "worker failed to start").await;
                return Err(e);
            }
        };
        let (stop_keeper, keeper_stop) = shutdown::channel();
        let keeper = tokio::spawn(keeper.run(keeper_stop));
        let scheduler = self.start_scheduler(&shutdown);

        let result = self.supervise(&mut slots, shutdown).await;
        if let Some(scheduler) = scheduler {
            if let Err(e) = scheduler.await {
                warn!(error = %e, "the scheduler ended abnormally");
            }
        }
        listener.abort();
        cancellations.abort();
        heart.stop(result.is_ok()).await;
        stop_keeper.stop();
        match keeper.await {
            Ok(Some(connection)) => link::close(&connection, "worker stopped").await,
            Ok(None) => {}
            Err(e) => warn!(error = %e, "the connection keeper ended abnormally"),
        }
        info!(worker = %self.shared.identity, "worker stopped");
        result
    }

    /// With `--scheduler` and schedules: the scheduler task (docs/scheduling.md).
    fn start_scheduler(&self, shutdown: &Shutdown) -> Option<tokio::task::JoinHandle<()>> {
        let config = &self.shared.config;
        if !config.scheduler || self.schedules.is_empty() {
            return None;
        }
        let settings = crate::periodic::Settings {
            deployment: config.deployment.clone(),
            identity: self.shared.identity.clone(),
        };
        let run = crate::periodic::run(settings, self.schedules.clone(), shutdown.clone());
        Some(tokio::spawn(run))
    }

    /// Waits for every slot (each reconnects on its own: they end only at a stop); a slot
    /// that fails or panics stops the worker. After a stop request, gives the slots
    /// `shutdown_timeout` to finish their jobs.
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
                        return Err(Error::SlotPanicked(e));
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

    /// Runs `middleware` around every job run, inside the ones given before (their `before`
    /// hooks run first, their `after` hooks last); see [`crate::middleware::Middleware`].
    pub fn middleware(mut self, middleware: impl crate::middleware::Middleware) -> Self {
        self.middleware.push(Arc::new(middleware));
        self
    }

    /// Enqueues `job` at every tick of the cron expression `cron` (seconds first, UTC:
    /// `"0 0 3 * * *"` is 03:00 UTC daily) under the schedule name `name`, when this worker
    /// runs the scheduler. An invalid expression is reported by [`WorkerBuilder::build`].
    /// For a time zone, an interval or a catch-up policy, use [`WorkerBuilder::periodic`].
    pub fn schedule<J: crate::Job>(self, name: &str, cron: &str, job: J) -> Self {
        match crate::Periodic::cron(name, cron) {
            Ok(periodic) => self.periodic(periodic, job),
            Err(e) => self.schedule_failed(e),
        }
    }

    /// Enqueues `job` at every tick of `periodic`, when this worker runs the scheduler.
    pub fn periodic<J: crate::Job>(mut self, periodic: crate::Periodic, job: J) -> Self {
        match crate::periodic::Entry::new(periodic, &job) {
            Ok(entry) => self.schedules.push(entry),
            Err(e) => return self.schedule_failed(e),
        }
        self
    }

    fn schedule_failed(mut self, e: Error) -> Self {
        self.schedule_error.get_or_insert(e);
        self
    }

    /// Uses these jobs instead of every job linked into the binary.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Validates the configuration and the job names.
    pub fn build(mut self) -> Result<Worker, Error> {
        self.config.validate()?;
        if let Some(e) = self.schedule_error {
            return Err(e);
        }

        let registry = match self.registry {
            Some(registry) => registry,
            None => Registry::linked()?,
        };
        let names = registry.names();
        let linked = crate::periodic::linked()?.into_iter();
        (self.schedules).extend(linked.filter(|e| names.contains(&e.job.name.as_str())));
        crate::periodic::check_names(&self.schedules)?;
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let pid = std::process::id();
        let identity = format!("{host}:{pid}:{}", self.config.queues.join(","));
        let tag_prefix = format!("palermo:{host}:{pid}");
        let queue_type = self.config.deployment.queue_type;
        let limits = limit_gate::Limits::new(&registry, &self.config.limits);
        let priorities = self.config.deployment.priorities.clone();
        Ok(Worker {
            shared: Arc::new(Shared {
                config: self.config,
                registry,
                state: Arc::new(self.state),
                identity,
                tag_prefix,
                stats: stats::Stats::default(),
                delays: crate::broker::delay::DelayQueues::new(queue_type)
                    .with_priorities(priorities),
                mender: crate::worker::heal::Mender::default(),
                blocked: crate::broker::blocked::Blocked::default(),
                recent: recent::Recent::default(),
                middleware: self.middleware,
                limits,
                run_id: uuid::Uuid::new_v4(),
                control: control::Control::default(),
                cancels: cancel::Cancels::default(),
            }),
            schedules: self.schedules,
        })
    }
}

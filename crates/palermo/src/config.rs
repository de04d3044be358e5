//! The worker's settings: one typed struct with documented defaults and a `validate()` whose
//! errors say what to change. Environment variables and flags are read by the binaries only
//! (see `cli.rs`).

use std::{collections::BTreeMap, time::Duration};

use crate::{
    broker::delay, broker::topology, deployment::Deployment, error::Error, limits::Limit,
    retry::Backoff,
};

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// What the worker shares with every client, scheduler and admin tool of its deployment:
    /// the broker, the queue type, the priority queues, the failed, events and scheduler
    /// queues (see [`Deployment`]). Defaults to [`Deployment::default`].
    pub deployment: Deployment,
    /// The queues to consume, in no particular priority. Required.
    pub queues: Vec<String>,
    /// How many jobs run at once; each slot has its own channel and runs one job at a time.
    /// Defaults to 1.
    pub concurrency: usize,
    /// How many deliveries a slot may hold unacked: the one it runs plus `prefetch - 1`
    /// waiting their turn, as Celery's prefetch multiplier. More than 1 saves the broker
    /// round trip between two tiny jobs, at a cost: a crashed or killed worker hands back
    /// up to `prefetch` jobs per slot (they run again elsewhere), and other workers cannot
    /// take the waiting ones meanwhile. At a stop the waiting ones go back to the queue
    /// unrun. A slot still runs one job at a time. From 1 to 1000; defaults to 1.
    pub prefetch: u16,
    /// After SIGINT/SIGTERM, how long in-flight jobs may take to finish before the worker
    /// exits and leaves them to the broker. Defaults to 30 s.
    pub shutdown_timeout: Duration,
    /// How long one run of a job may take when the job sets no `timeout`; a run past it is
    /// cancelled and counts as a failed attempt. Defaults to 25 minutes: below RabbitMQ's
    /// `consumer_timeout` (30 minutes), which would otherwise close the channel under a
    /// running job (docs/retries.md says how to raise it for longer jobs).
    pub job_timeout: Duration,
    /// How long a running job an operator cancelled (`palermo jobs cancel`) may go on after
    /// it is told (`JobContext::cancelled`) before its run is dropped, as a timeout drops
    /// it; either way its outcome is cancelled. `--cancel-grace`. Defaults to 30 s.
    pub cancel_grace: Duration,
    /// How many times a job runs at most when neither its message nor the job
    /// (`#[job(max_attempts = ..)]`) says; 1 means no retry. Defaults to
    /// 15 (about a day of retries).
    pub max_attempts: u32,
    /// The delays between attempts when the job sets no `backoff`. Defaults to
    /// [`Backoff::DEFAULT`]: 15 s doubling up to 6 hours, plus 0–25 % jitter.
    pub backoff: Backoff,
    /// How many times a job may come back to the queue without any run finishing (its
    /// worker died, lost its connection...) before it goes to the failed queue as a poison
    /// message instead of running again. At most 20 on quorum queues, whose default
    /// delivery limit on RabbitMQ 4.0 drops a message returned more than 20 times before the
    /// worker could fail it. Defaults to 5.
    pub max_redeliveries: u32,
    /// How often the worker publishes a heartbeat (who it is, what it runs, its counters).
    /// The admin side marks a worker gone after three missed heartbeats. Defaults to 5 s.
    pub heartbeat_interval: Duration,
    /// The delays between attempts to reconnect after the broker connection drops: the
    /// worker tries again after `base`, doubling up to `max` (at most 10 minutes), each plus
    /// `jitter`. At start-up it does not wait: a broker it cannot reach is an error then.
    /// Defaults to [`crate::reconnect::DEFAULT_BACKOFF`]: 250 ms doubling up to 5 s, plus
    /// 0–25 %.
    pub reconnect: Backoff,
    /// Whether this worker also runs the scheduler of periodic jobs (`--scheduler`). Any
    /// number of workers may; one at a time is active (docs/scheduling.md). Defaults to false.
    pub scheduler: bool,
    /// Fleet-wide concurrency and rate limits by job name (`--limit`), for jobs defined
    /// elsewhere (another language) or to change a `#[job]`'s own: a limit here replaces
    /// the job's. Every worker running a job must be given the same (docs/limits.md).
    /// Defaults to none.
    pub limits: BTreeMap<String, Limit>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            deployment: Deployment::default(),
            queues: Vec::new(),
            concurrency: 1,
            prefetch: 1,
            shutdown_timeout: Duration::from_secs(30),
            job_timeout: Duration::from_secs(25 * 60),
            cancel_grace: Duration::from_secs(30),
            max_attempts: crate::retry::DEFAULT_MAX_ATTEMPTS,
            max_redeliveries: 5,
            backoff: Backoff::DEFAULT,
            heartbeat_interval: Duration::from_secs(5),
            reconnect: crate::reconnect::DEFAULT_BACKOFF,
            scheduler: false,
            limits: BTreeMap::new(),
        }
    }
}

impl WorkerConfig {
    /// A default configuration consuming `queues`.
    pub fn new<S: Into<String>>(queues: impl IntoIterator<Item = S>) -> Self {
        Self {
            queues: queues.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Checks the settings; the error says what to change.
    pub fn validate(&self) -> Result<(), Error> {
        if self.queues.is_empty() {
            return Err(Error::Config(
                "no queues to consume: pass --queues a,b (or set WorkerConfig::queues)".into(),
            ));
        }
        for (i, queue) in self.queues.iter().enumerate() {
            topology::validate_queue_name(queue)?;
            if delay::is_reserved(queue) {
                return Err(Error::Config(format!(
                    "{queue:?} is one of the delay queues; workers do not consume them (pick a name not starting with {:?})",
                    delay::PREFIX
                )));
            }
            if self.queues[..i].contains(queue) {
                return Err(Error::Config(format!("queue {queue:?} is listed twice")));
            }
            if *queue == self.deployment.failed_queue {
                return Err(Error::Config(format!(
                    "{queue:?} is the failed queue; workers do not consume it (use `palermo failed`)"
                )));
            }
            let deployment = &self.deployment;
            if [&deployment.events_exchange, &deployment.scheduler_queue].contains(&queue) {
                return Err(Error::Config(format!(
                    "{queue:?} is the events or the scheduler queue; workers do not consume it as a job queue (pick another name)"
                )));
            }
        }
        self.deployment.validate()?;
        if !(Duration::from_millis(10)..=Duration::from_secs(3600))
            .contains(&self.heartbeat_interval)
        {
            return Err(Error::Config(format!(
                "the heartbeat interval is {:?}; it must be from 10 ms to 1 hour",
                self.heartbeat_interval
            )));
        }
        if !(1..=1000).contains(&self.concurrency) {
            return Err(Error::Config(format!(
                "concurrency is {}; it must be from 1 to 1000",
                self.concurrency
            )));
        }
        if !(1..=1000).contains(&self.prefetch) {
            return Err(Error::Config(format!(
                "prefetch is {}; it must be from 1 to 1000 (1, the default, holds no job beyond the one running)",
                self.prefetch
            )));
        }
        if self.job_timeout.is_zero() {
            return Err(Error::Config(
                "the job timeout must be more than zero".into(),
            ));
        }
        if self.max_redeliveries == 0 {
            return Err(Error::Config(
                "max_redeliveries is 0; it must be at least 1 (5 is the default)".into(),
            ));
        }
        if self.deployment.queue_type == topology::QueueType::Quorum
            && self.max_redeliveries > topology::QUORUM_DELIVERY_LIMIT
        {
            return Err(Error::Config(format!(
                "max_redeliveries is {}; on quorum queues it must be at most {}: RabbitMQ 4.0 \
                 drops a message returned more than {} times (its default delivery limit) \
                 before the worker could fail it as poison",
                self.max_redeliveries,
                topology::QUORUM_DELIVERY_LIMIT,
                topology::QUORUM_DELIVERY_LIMIT
            )));
        }
        if self.max_attempts == 0 {
            return Err(Error::Config(
                "max attempts is 0; it must be at least 1 (1 means no retry)".into(),
            ));
        }
        self.backoff.validate()?;
        for (job, limit) in &self.limits {
            limit.validate(job)?;
        }
        crate::reconnect::validate(&self.reconnect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_says_what_to_change() {
        let err = WorkerConfig::default().validate().expect_err("no queues");
        assert!(err.to_string().contains("--queues"), "{err}");
        assert!(WorkerConfig::new(["mail", "video"]).validate().is_ok());
        let err = WorkerConfig::new(["mail", "mail"])
            .validate()
            .expect_err("dup");
        assert!(err.to_string().contains("twice"), "{err}");
        let mut config = WorkerConfig::new(["mail"]);
        config.concurrency = 0;
        assert!(config.validate().is_err());
        let mut config = WorkerConfig::new(["mail"]);
        for (prefetch, ok) in [
            (0, false),
            (1, true),
            (100, true),
            (1000, true),
            (1001, false),
        ] {
            config.prefetch = prefetch;
            assert_eq!(config.validate().is_ok(), ok, "prefetch {prefetch}");
        }
        config.prefetch = 0;
        let err = config.validate().expect_err("prefetch 0");
        assert!(err.to_string().contains("prefetch"), "{err}");
        assert!(WorkerConfig::new(["bad name"]).validate().is_err());
        let err = WorkerConfig::new(["palermo.delay.retry.0"])
            .validate()
            .expect_err("delay queue");
        assert!(err.to_string().contains("delay"), "{err}");
        let mut config = WorkerConfig::new(["mail"]);
        config.max_attempts = 0;
        assert!(config.validate().is_err());
        config.max_attempts = 1;
        config.backoff.jitter = -1.0;
        let err = config.validate().expect_err("jitter");
        assert!(err.to_string().contains("jitter"), "{err}");
        let mut config = WorkerConfig::new(["mail"]);
        config.deployment.amqp_url = "amqp://a,,amqp://b".into();
        let err = config.validate().expect_err("empty address");
        assert!(err.to_string().contains("address 2 of 3"), "{err}");
        let mut config = WorkerConfig::new(["mail"]);
        config.limits.insert("send".into(), Limit::NONE);
        let err = config.validate().expect_err("an empty limit");
        assert!(
            err.to_string().contains("neither a concurrency nor a rate"),
            "{err}"
        );
        let err = WorkerConfig::new([topology::SCHEDULER_QUEUE])
            .validate()
            .expect_err("the scheduler queue");
        assert!(err.to_string().contains("scheduler"), "{err}");
    }

    #[test]
    fn on_quorum_queues_the_poison_guard_acts_before_rabbitmq_4s_delivery_limit() {
        let mut config = WorkerConfig::new(["mail"]);
        config.max_redeliveries = 21;
        assert!(config.validate().is_ok(), "classic queues have no limit");
        config.deployment.queue_type = topology::QueueType::Quorum;
        let err = config.validate().expect_err("above the limit");
        assert!(err.to_string().contains("at most 20"), "{err}");
        config.max_redeliveries = 20;
        assert!(config.validate().is_ok());
    }
}

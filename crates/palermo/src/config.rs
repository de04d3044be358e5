//! The worker's settings: one typed struct with documented defaults and a `validate()` whose
//! errors say what to change. Environment variables and flags are read by the binaries only
//! (see [`crate::worker::cli`]).

use std::time::Duration;

use crate::{error::Error, topology};

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The broker. Defaults to [`crate::DEFAULT_AMQP_URL`].
    pub amqp_url: String,
    /// The queues to consume, in no particular priority. Required.
    pub queues: Vec<String>,
    /// How many jobs run at once; each slot has its own channel with prefetch 1, so this is
    /// also the most unacked deliveries the worker holds. Defaults to 1.
    pub concurrency: usize,
    /// After SIGINT/SIGTERM, how long in-flight jobs may take to finish before the worker
    /// exits and leaves them to the broker. Defaults to 30 s.
    pub shutdown_timeout: Duration,
    /// How long one run of a job may take when the job sets no `timeout`. Defaults to
    /// 25 minutes: below RabbitMQ's `consumer_timeout` (30 minutes), which would otherwise
    /// close the channel under a running job.
    pub job_timeout: Duration,
    /// The queue failed jobs go to. Defaults to [`topology::FAILED_QUEUE`].
    pub failed_queue: String,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            amqp_url: crate::DEFAULT_AMQP_URL.to_string(),
            queues: Vec::new(),
            concurrency: 1,
            shutdown_timeout: Duration::from_secs(30),
            job_timeout: Duration::from_secs(25 * 60),
            failed_queue: topology::FAILED_QUEUE.to_string(),
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
            topology::validate_queue_name(queue).map_err(Error::Config)?;
            if self.queues[..i].contains(queue) {
                return Err(Error::Config(format!("queue {queue:?} is listed twice")));
            }
            if *queue == self.failed_queue {
                return Err(Error::Config(format!(
                    "{queue:?} is the failed queue; workers do not consume it (use `palermo failed`)"
                )));
            }
        }
        topology::validate_queue_name(&self.failed_queue).map_err(Error::Config)?;
        if !(1..=1000).contains(&self.concurrency) {
            return Err(Error::Config(format!(
                "concurrency is {}; it must be from 1 to 1000",
                self.concurrency
            )));
        }
        if self.job_timeout.is_zero() {
            return Err(Error::Config(
                "the job timeout must be more than zero".into(),
            ));
        }
        Ok(())
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
        assert!(WorkerConfig::new(["bad name"]).validate().is_err());
    }
}

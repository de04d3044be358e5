//! What every process of a deployment must agree on: the broker, the queue type, the priority
//! queues and the names of the shared queues. One value, [`Deployment`], given whole to the
//! worker ([`crate::WorkerConfig::deployment`]), the client ([`crate::ClientConfig`]), the
//! scheduler, the admin recorder, the dashboard and the `palermo` command.
//!
//! Why one value: RabbitMQ refuses to declare an existing queue with other arguments
//! (`PRECONDITION_FAILED`, and the channel closes), and every one of those components
//! declares queues. A setting copied field by field into each of them is a setting one copy
//! can drop: the scheduler's once dropped the priorities, and its client looped on the
//! broker's refusal. Binaries read these settings from the same flags and environment
//! variables (`palermo::cli::DeploymentArgs`, docs/guide.md).

use crate::{broker::priority::Priorities, broker::topology, broker::Addresses, error::Error};

#[cfg(feature = "cli")]
mod args;
#[cfg(feature = "cli")]
pub use args::DeploymentArgs;

/// The settings every client, worker, scheduler and admin tool of a deployment shares.
///
/// ```
/// use palermo::{Deployment, Priorities, QueueType};
///
/// let deployment = Deployment {
///     amqp_url: "amqp://guest:guest@rabbit:5672/%2f".into(),
///     priorities: Priorities::default().with("reports", 10),
///     ..Deployment::default()
/// };
/// assert_eq!(deployment.queue_type, QueueType::Classic);
/// deployment.validate()?;
/// # Ok::<(), palermo::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployment {
    /// The broker: one AMQP URL (`amqp://user:pass@host:port/vhost`), or the nodes of a
    /// cluster as a comma-separated list (a process connects to one that answers, and to
    /// another when it dies). `--amqp-url`, `PALERMO_AMQP_URL`. Defaults to
    /// [`crate::DEFAULT_AMQP_URL`].
    pub amqp_url: String,
    /// The type of every queue Palermo declares (job queues, the failed, events, scheduler
    /// and delay queues); see [`topology::QueueType`]. `--queue-type`, `PALERMO_QUEUE_TYPE`.
    /// Defaults to classic.
    pub queue_type: topology::QueueType,
    /// The job queues declared as priority queues, with their `x-max-priority`
    /// ([`Priorities`]; classic queues, or quorum queues on RabbitMQ 4.0 and later, which a
    /// client or worker checks against the broker's version when it connects).
    /// `--max-priority QUEUE=N` (repeatable), `PALERMO_MAX_PRIORITY=QUEUE=N,QUEUE=N`.
    /// Defaults to none.
    pub priorities: Priorities,
    /// The queue failed jobs go to and the admin side records from. `--failed-queue`,
    /// `PALERMO_FAILED_QUEUE`. Defaults to [`topology::FAILED_QUEUE`].
    pub failed_queue: String,
    /// The topic exchange (and queue) workers' heartbeats go to and the admin side records
    /// from. `--events-exchange`, `PALERMO_EVENTS_EXCHANGE`. Defaults to
    /// [`topology::EVENTS_EXCHANGE`].
    pub events_exchange: String,
    /// The queue schedulers elect their leader through and keep the last ticks in
    /// (docs/scheduling.md); `palermo schedules` reads it. `--scheduler-queue`,
    /// `PALERMO_SCHEDULER_QUEUE`. Defaults to `palermo.scheduler`.
    pub scheduler_queue: String,
    /// The topic exchange operators' commands (pause, resume, quiet, stop, cancel) reach the
    /// workers through; the name also prefixes the pause markers and the cancellations stream
    /// (docs/admin.md, "Control"). `--control-exchange`, `PALERMO_CONTROL_EXCHANGE`.
    /// Defaults to [`topology::CONTROL_EXCHANGE`].
    pub control_exchange: String,
}

impl Default for Deployment {
    fn default() -> Self {
        Self {
            amqp_url: crate::DEFAULT_AMQP_URL.to_string(),
            queue_type: topology::QueueType::Classic,
            priorities: Priorities::default(),
            failed_queue: topology::FAILED_QUEUE.to_string(),
            events_exchange: topology::EVENTS_EXCHANGE.to_string(),
            scheduler_queue: topology::SCHEDULER_QUEUE.to_string(),
            control_exchange: topology::CONTROL_EXCHANGE.to_string(),
        }
    }
}

impl Deployment {
    /// The default deployment on the broker at `amqp_url`.
    pub fn new(amqp_url: impl Into<String>) -> Self {
        Self {
            amqp_url: amqp_url.into(),
            ..Self::default()
        }
    }

    /// The durable queue batch events go to (docs/workflows.md, "Batches"): the events
    /// exchange's name plus `.batches`, so each deployment has its own.
    pub fn batches_queue(&self) -> String {
        format!("{}.batches", self.events_exchange)
    }

    /// Checks the settings; the error names the flag to change.
    pub fn validate(&self) -> Result<(), Error> {
        Addresses::parse(&self.amqp_url)?;
        let names = [
            ("--failed-queue", &self.failed_queue),
            ("--events-exchange", &self.events_exchange),
            ("--scheduler-queue", &self.scheduler_queue),
            ("--control-exchange", &self.control_exchange),
        ];
        for (i, (flag, name)) in names.iter().enumerate() {
            topology::validate_queue_name(name)
                .map_err(|e| Error::Config(format!("{flag} {name:?}: {e}")))?;
            if let Some((other, _)) = names[..i].iter().find(|(_, n)| n == name) {
                return Err(Error::Config(format!(
                    "{flag} and {other} are both {name:?}; give each its own name"
                )));
            }
        }
        self.priorities.validate(self.queue_type)?;
        if self.priorities.of(&self.failed_queue).is_some() {
            return Err(Error::Config(format!(
                "--max-priority names the failed queue {:?}; only job queues can be priority queues",
                self.failed_queue
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_flag_to_change() {
        assert!(Deployment::default().validate().is_ok());
        let bad = |change: fn(&mut Deployment), expected: &str| {
            let mut deployment = Deployment::default();
            change(&mut deployment);
            let err = deployment.validate().expect_err(expected);
            assert!(err.to_string().contains(expected), "{expected}: {err}");
        };
        bad(
            |d| d.amqp_url = "amqp://a,,amqp://b".into(),
            "address 2 of 3",
        );
        bad(|d| d.failed_queue = "amq.failed".into(), "--failed-queue");
        bad(|d| d.events_exchange = String::new(), "--events-exchange");
        bad(
            |d| d.scheduler_queue = "bad name".into(),
            "--scheduler-queue",
        );
        bad(
            |d| d.scheduler_queue = topology::FAILED_QUEUE.into(),
            "--scheduler-queue and --failed-queue",
        );
        bad(
            |d| d.priorities = Priorities::default().with(topology::FAILED_QUEUE, 5),
            "failed queue",
        );
    }
}

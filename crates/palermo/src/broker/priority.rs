//! Priority queues: the one setting that says which job queues are priority queues and their
//! `x-max-priority` ([`Priorities`], opted into per queue). The priority of one job is an
//! enqueue option ([`crate::Options::priority`]).
//!
//! Why one setting: RabbitMQ refuses to declare an existing queue with other arguments
//! (`PRECONDITION_FAILED`, and the channel closes), and clients, workers, the delay queues
//! and the CLI all declare job queues. So a deployment writes its priority queues once and
//! gives the same list to each: [`crate::Deployment::priorities`], read from
//! `--max-priority QUEUE=N` (`PALERMO_MAX_PRIORITY`) by every binary. When the broker refuses
//! a declare for another value, the error names that setting (`topology::declare_job_queue`).
//!
//! Quorum queues: both RabbitMQ 3.10 and 4.0 refuse `x-max-priority` on them
//! (`PRECONDITION_FAILED - invalid arg`, checked by tests/priority.rs). 3.x delivers them in
//! order whatever a message's priority; 4.0 orders every quorum queue by priority, in two
//! levels (5 and above before the rest, at most two of those per one of the others so the
//! rest never starves). So on quorum queues the setting declares a plain quorum queue and
//! counts only on a broker that orders them: a worker or client of a quorum deployment with
//! priority queues asks the broker's version when it connects ([`check_broker`]) and refuses
//! to start on 3.x, before anything is declared.

use std::collections::BTreeMap;

use crate::{
    broker::topology::{self, QueueType},
    broker::Version,
    error::Error,
};

/// Whether `priorities` can work on the broker of `version` (`Err`: why it is unknown):
/// on classic queues always, on quorum queues from RabbitMQ 4.0 on. The error says what to
/// change.
pub(crate) fn check_broker(
    queue_type: QueueType,
    priorities: &Priorities,
    version: &Result<Version, String>,
) -> Result<(), Error> {
    let Some(queue) = priorities.0.keys().next() else {
        return Ok(());
    };
    if queue_type != QueueType::Quorum {
        return Ok(());
    }
    let found = match version {
        Ok(version) if version.orders_quorum_queues() => return Ok(()),
        Ok(version) => format!("this broker runs RabbitMQ {version}"),
        Err(e) => format!("this broker's version is unknown: {e}"),
    };
    Err(Error::Config(format!(
        "priority queue {queue}: priorities on quorum queues need RabbitMQ 4.0 or later \
         ({found}; 3.x refuses x-max-priority on quorum queues and ignores message \
         priorities there); unset max priority or use --queue-type classic"
    )))
}

/// [`check_broker`] for the broker at `url`, asking its version only when the answer
/// matters (quorum queues with priorities): what a worker does before it connects.
pub(crate) async fn check_broker_at(
    url: &str,
    queue_type: QueueType,
    priorities: &Priorities,
) -> Result<(), Error> {
    if queue_type != QueueType::Quorum || priorities.0.is_empty() {
        return Ok(());
    }
    let addresses = crate::broker::Addresses::parse(url)?;
    let version = addresses.version().await.map_err(|e| e.to_string());
    check_broker(queue_type, priorities, &version)
}

/// Which job queues are priority queues, and the `x-max-priority` of each; the others are
/// plain queues. Defaults to none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Priorities(BTreeMap<String, u8>);

impl Priorities {
    /// These priorities with `queue` declared with `x-max-priority = max` (1 to 255;
    /// RabbitMQ advises at most 10).
    pub fn with(mut self, queue: impl Into<String>, max: u8) -> Self {
        self.0.insert(queue.into(), max);
        self
    }

    /// The `x-max-priority` of `queue`, if it is a priority queue.
    pub fn of(&self, queue: &str) -> Option<u8> {
        self.0.get(queue).copied()
    }

    /// Checks every entry against `queue_type` ([`topology::validate_max_priority`]).
    pub fn validate(&self, queue_type: QueueType) -> Result<(), Error> {
        for (queue, max) in &self.0 {
            topology::validate_queue_name(queue)?;
            topology::validate_max_priority(queue_type, Some(*max)).map_err(|e| match e {
                Error::Config(reason) => Error::Config(format!("priority queue {queue}: {reason}")),
                e => e,
            })?;
        }
        Ok(())
    }

    /// Reads the `QUEUE=N` of a `--max-priority` flag (`reports=10`).
    pub fn parse_flag(text: &str) -> Result<(String, u8), String> {
        let (queue, max) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?} is not QUEUE=N, e.g. reports=10"))?;
        let max: u8 = max
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: N must be a whole number from 1 to 255"))?;
        Ok((queue.trim().to_string(), max))
    }
}

impl FromIterator<(String, u8)> for Priorities {
    fn from_iter<I: IntoIterator<Item = (String, u8)>>(entries: I) -> Self {
        Priorities(entries.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_lookups() {
        let (queue, max) = Priorities::parse_flag("reports=10").expect("flag");
        let priorities: Priorities = [(queue, max)].into_iter().collect();
        assert_eq!(priorities.of("reports"), Some(10));
        assert_eq!(priorities.of("mail"), None);
        assert!(Priorities::parse_flag("reports").is_err());
        assert!(Priorities::parse_flag("reports=300").is_err());
        assert!(
            priorities.validate(QueueType::Quorum).is_ok(),
            "the broker decides"
        );
    }

    #[test]
    fn quorum_queues_take_priorities_from_rabbitmq_4_on() {
        let priorities = Priorities::default().with("reports", 10);
        let version = |t| Version::parse(t).ok_or_else(|| t.to_string());
        let (quorum, classic) = (QueueType::Quorum, QueueType::Classic);
        let err = check_broker(quorum, &priorities, &version("3.10.8")).expect_err("3.10");
        let text = err.to_string();
        assert!(
            text.contains("3.10.8") && text.contains("4.0") && text.contains("classic"),
            "{text}"
        );
        assert!(check_broker(quorum, &priorities, &version("4.0.5")).is_ok());
        assert!(check_broker(quorum, &priorities, &Err("over amqps".into())).is_err());
        assert!(check_broker(classic, &priorities, &version("3.10.8")).is_ok());
        let none = Priorities::default();
        assert!(check_broker(quorum, &none, &version("3.10.8")).is_ok());
    }
}

//! Priority queues: the one setting that says which job queues are priority queues and their
//! `x-max-priority` ([`Priorities`], opted into per queue). The priority of one job is an
//! enqueue option ([`crate::Options::priority`]).
//!
//! Why one setting: RabbitMQ refuses to declare an existing queue with other arguments
//! (`PRECONDITION_FAILED`, and the channel closes), and clients, workers, the delay queues
//! and the CLI all declare job queues. So a deployment writes its priority queues once and
//! gives the same list to each: [`crate::Deployment::priorities`], read from
//! `--max-priority QUEUE=N` (`PALERMO_MAX_PRIORITY`) by every binary. When the broker refuses
//! a declare for another value, the error names that setting ([`mismatch`]).
//!
//! Quorum queues: RabbitMQ 3.10 refuses `x-max-priority` on them (`PRECONDITION_FAILED -
//! invalid arg`, checked by tests/priority.rs), and 4.0 gives them two fixed levels instead
//! (normal, and high for priority above 4: not verified here). Neither is a classic priority
//! queue, so Palermo refuses the setting on quorum queues with an error before the broker
//! would close the channel.

use std::collections::BTreeMap;

use lapin::types::{AMQPValue, FieldTable};

use crate::{error::Error, topology::QueueType};

/// What a setting of `max_priority` must satisfy: 1 to 255 (RabbitMQ advises at most 10:
/// each level costs an internal queue and some CPU), on classic queues.
pub fn validate(queue_type: QueueType, max_priority: Option<u8>) -> Result<(), Error> {
    match (max_priority, queue_type) {
        (None, _) => Ok(()),
        (Some(0), _) => Err(Error::Config(
            "max priority 0 makes no priority queue; leave it unset instead".into(),
        )),
        (Some(_), QueueType::Quorum) => Err(Error::Config(
            "priorities need classic queues: RabbitMQ 3.x refuses x-max-priority on quorum \
             queues (4.x has two fixed levels); remove its --max-priority or use --queue-type classic"
                .into(),
        )),
        (Some(_), _) => Ok(()),
    }
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

    /// Checks every entry against `queue_type` ([`validate`]).
    pub fn validate(&self, queue_type: QueueType) -> Result<(), Error> {
        for (queue, max) in &self.0 {
            crate::topology::validate_queue_name(queue)?;
            validate(queue_type, Some(*max)).map_err(|e| match e {
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

/// The `queue.declare` arguments of a job queue: its type and, when set, `x-max-priority`.
pub fn job_queue_arguments(
    queue_type: QueueType,
    max_priority: Option<u8>,
) -> Result<FieldTable, Error> {
    validate(queue_type, max_priority)?;
    let mut args = queue_type.arguments();
    if let Some(max) = max_priority {
        args.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(max));
    }
    Ok(args)
}

/// The broker's refusal to declare `queue` (`PRECONDITION_FAILED - inequivalent arg
/// 'x-max-priority'`) as an error that names the setting to fix, or `None` when the refusal
/// is about another argument (the queue type: [`crate::topology`]'s hint names that one).
pub(crate) fn mismatch(queue: &str, max_priority: Option<u8>, error: &Error) -> Option<Error> {
    let text = error.to_string();
    if !text.contains("'x-max-priority'") {
        return None;
    }
    let ours = max_priority.map_or("none".to_string(), |m| m.to_string());
    Some(Error::Config(format!(
        "queue {queue} exists with another x-max-priority than this process's max priority \
         for it ({ours}); give every client, worker and admin command of the deployment the \
         same priority queues (--max-priority {queue}=N or PALERMO_MAX_PRIORITY, \
         Deployment::priorities), or delete the queue to change it ({text})"
    )))
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
        assert!(priorities.validate(QueueType::Quorum).is_err());
    }

    #[test]
    fn the_hint_names_the_argument_that_differs() {
        let refused = |arg: &str| {
            Error::Config(format!(
                "PRECONDITION_FAILED - inequivalent arg '{arg}' for queue 'q' in vhost '/'"
            ))
        };
        let hint = mismatch("q", Some(5), &refused("x-max-priority")).expect("priority");
        assert!(hint.to_string().contains("--max-priority q=N"), "{hint}");
        assert!(!hint.to_string().contains("--queue-type"), "{hint}");
        assert!(mismatch("q", Some(5), &refused("x-queue-type")).is_none());
        let hint = crate::topology::inequivalent("q", QueueType::Classic, refused("x-queue-type"));
        assert!(hint.to_string().contains("--queue-type"), "{hint}");
    }

    #[test]
    fn quorum_and_zero_are_refused() {
        assert!(validate(QueueType::Quorum, Some(5)).is_err());
        assert!(validate(QueueType::Quorum, None).is_ok());
        assert!(validate(QueueType::Classic, Some(0)).is_err());
        let args = job_queue_arguments(QueueType::Classic, Some(10)).expect("classic");
        assert_eq!(
            args.inner().get("x-max-priority"),
            Some(&AMQPValue::ShortShortUInt(10))
        );
    }
}

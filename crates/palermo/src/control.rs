//! The control plane on the broker: how operators' commands reach workers, and where the
//! state that must outlive a worker is kept. Workers still speak only AMQP.
//!
//! - **Live commands** go to a durable topic exchange ([`EXCHANGE`], named in
//!   [`crate::Deployment::control_exchange`]). Every worker binds an exclusive, auto-delete
//!   queue of its own to its routing key ([`worker_key`], from the run id in its heartbeats)
//!   and to [`BROADCAST_KEY`]. Celery's remote control works the same way; its weakness, that
//!   a worker started later never hears an earlier command, is why pauses are not only
//!   broadcast:
//! - **A pause is a marker the broker keeps in its metadata**: a durable exchange
//!   ([`pause_marker`]) declared on pause and deleted on resume. A worker looks for the
//!   markers of its queues (passive declares) when it connects and after every reconnect,
//!   before its slots consume, so a pause holds across worker and broker restarts; exchanges
//!   are cluster metadata, so it also holds when a node of a cluster dies. The broadcast only
//!   makes running workers act at once.
//!
//! The admin side ([`pause`], [`resume`], [`send`]) declares the marker first and publishes
//! the command after, with a confirm; a worker reads the markers after its command queue is
//! bound, so whichever it sees last is the newest state.
//!
//! - **A paused schedule** (periodic jobs) is a marker too ([`schedule_pause_marker`]),
//!   followed by a [`ScheduleCommand`] to [`SCHEDULER_KEY`], which only the active scheduler
//!   listens to. The scheduler reads the markers when it takes over (after binding its
//!   command queue, as a worker does) and follows the commands after that, so a scheduler
//!   that takes over (a failover, a restart) honours a pause from its first tick, and no
//!   check runs per tick.
//!
//! - **A cancellation is an entry in a stream** ([`cancellations`]): the broker keeps it for a
//!   retention window, and every worker reads the whole stream when it connects, so a job
//!   cancelled before its worker started is not run either.

pub mod cancellations;

use std::collections::BTreeSet;

use lapin::{
    options::{ExchangeDeclareOptions, ExchangeDeleteOptions},
    types::FieldTable,
    BasicProperties, Channel, Connection, ExchangeKind,
};
use serde::{Deserialize, Serialize};

use crate::{
    broker::{self, topology},
    error::Error,
    wire, Deployment,
};

/// The default control exchange.
pub const EXCHANGE: &str = topology::CONTROL_EXCHANGE;
/// The routing key every worker listens to besides its own.
pub const BROADCAST_KEY: &str = "all";
/// The AMQP `type` of command messages.
pub const COMMAND_TYPE: &str = "palermo.command";

/// The routing key of one run of a worker (its heartbeats' `id`).
pub fn worker_key(run_id: &str) -> String {
    format!("worker.{run_id}")
}

/// The exchange whose existence means that `queue` is paused.
pub fn pause_marker(deployment: &Deployment, queue: &str) -> String {
    format!("{}.paused.{queue}", deployment.control_exchange)
}

/// The exchange whose existence means that schedule `name` is paused.
pub fn schedule_pause_marker(deployment: &Deployment, name: &str) -> String {
    format!("{}.schedule-paused.{name}", deployment.control_exchange)
}

/// The routing key the active scheduler listens to (schedule pauses and resumes).
pub const SCHEDULER_KEY: &str = "scheduler";

/// What an operator tells the active scheduler (JSON,
/// `{"command": "pause_schedule", "schedule": "nightly"}`); the marker says so to later ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ScheduleCommand {
    /// Skip the schedule's ticks.
    PauseSchedule {
        /// The schedule's name.
        schedule: String,
    },
    /// Enqueue its ticks again.
    ResumeSchedule {
        /// The schedule's name.
        schedule: String,
    },
}

/// What an operator tells workers (JSON, `{"command": "pause", "queue": "mail"}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Command {
    /// Stop consuming `queue` (running jobs finish); the marker says so to later workers.
    Pause {
        /// The job queue.
        queue: String,
    },
    /// Consume `queue` again.
    Resume {
        /// The job queue.
        queue: String,
    },
    /// Take no new jobs, finish the running ones, stay connected.
    Quiet,
    /// The same graceful stop as SIGTERM.
    Stop,
}

/// Declares the control exchange (topic, durable).
pub async fn declare(channel: &Channel, deployment: &Deployment) -> Result<(), Error> {
    let name = &deployment.control_exchange;
    topology::declare_durable_exchange(channel, name, ExchangeKind::Topic, FieldTable::default())
        .await
}

/// Which of `queues` are paused: those whose marker exists.
pub async fn paused(
    connection: &Connection,
    deployment: &Deployment,
    queues: &[String],
) -> Result<BTreeSet<String>, Error> {
    marked(connection, queues, |queue| pause_marker(deployment, queue)).await
}

/// Which of the schedules `names` are paused: those whose marker exists.
pub async fn paused_schedules(
    connection: &Connection,
    deployment: &Deployment,
    names: &[String],
) -> Result<BTreeSet<String>, Error> {
    marked(connection, names, |name| {
        schedule_pause_marker(deployment, name)
    })
    .await
}

/// Which of `names` have their marker (`marker(name)`): one passive declare per name, each
/// on a throwaway channel (the broker closes the channel of a passive declare that finds
/// nothing).
async fn marked(
    connection: &Connection,
    names: &[String],
    marker: impl Fn(&str) -> String,
) -> Result<BTreeSet<String>, Error> {
    let mut found = BTreeSet::new();
    for name in names {
        let channel = connection
            .create_channel()
            .await
            .map_err(Error::broker("channel.open"))?;
        // A name too long for a marker cannot have been paused (its pause was refused).
        let Ok(marker) = topology::short_name("exchange name", &marker(name)) else {
            continue;
        };
        let passive = ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        };
        match channel
            .exchange_declare(marker, ExchangeKind::Fanout, passive, FieldTable::default())
            .await
        {
            Ok(()) => {
                found.insert(name.clone());
                let _ = channel.close(200, "looked".into()).await;
            }
            Err(e) if topology::is_not_found(&e) => {}
            Err(e) => return Err(Error::broker("exchange.declare (passive)")(e)),
        }
    }
    Ok(found)
}

/// Declares the durable, internal marker exchange `marker` (idempotent).
async fn declare_marker(channel: &Channel, marker: &str) -> Result<(), Error> {
    let internal = ExchangeDeclareOptions {
        durable: true,
        internal: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            topology::short_name("exchange name", marker)?,
            ExchangeKind::Fanout,
            internal,
            FieldTable::default(),
        )
        .await
        .map_err(Error::broker("exchange.declare"))
}

/// Deletes the marker exchange `marker` (deleting a missing one is not an error).
async fn delete_marker(channel: &Channel, marker: &str) -> Result<(), Error> {
    let marker = topology::short_name("exchange name", marker)?;
    channel
        .exchange_delete(marker, ExchangeDeleteOptions::default())
        .await
        .map_err(Error::broker("exchange.delete"))
}

/// Pauses (`paused`) or resumes schedule `name` for every scheduler, now and after failovers
/// and restarts: declares or deletes its marker, then tells the active scheduler (confirmed).
/// A paused schedule's ticks are skipped, not kept for later.
pub async fn set_schedule_paused(
    connection: &Connection,
    deployment: &Deployment,
    name: &str,
    paused: bool,
) -> Result<(), Error> {
    let channel = broker::confirm_channel(connection).await?;
    let marker = schedule_pause_marker(deployment, name);
    let schedule = name.to_string();
    let command = if paused {
        declare_marker(&channel, &marker).await?;
        ScheduleCommand::PauseSchedule { schedule }
    } else {
        delete_marker(&channel, &marker).await?;
        ScheduleCommand::ResumeSchedule { schedule }
    };
    publish(&channel, deployment, SCHEDULER_KEY, &command).await
}

/// Pauses `queue` for every worker, now and later: declares its marker, then broadcasts.
pub async fn pause(
    connection: &Connection,
    deployment: &Deployment,
    queue: &str,
) -> Result<(), Error> {
    topology::validate_queue_name(queue)?;
    let channel = broker::confirm_channel(connection).await?;
    declare_marker(&channel, &pause_marker(deployment, queue)).await?;
    let command = Command::Pause {
        queue: queue.to_string(),
    };
    publish(&channel, deployment, BROADCAST_KEY, &command).await
}

/// Resumes `queue`: deletes its marker, then broadcasts.
pub async fn resume(
    connection: &Connection,
    deployment: &Deployment,
    queue: &str,
) -> Result<(), Error> {
    topology::validate_queue_name(queue)?;
    let channel = broker::confirm_channel(connection).await?;
    delete_marker(&channel, &pause_marker(deployment, queue)).await?;
    let command = Command::Resume {
        queue: queue.to_string(),
    };
    publish(&channel, deployment, BROADCAST_KEY, &command).await
}

/// Sends `command` to the workers listening to `key` ([`worker_key`] or [`BROADCAST_KEY`]),
/// waiting for the broker's confirm.
pub async fn send(
    connection: &Connection,
    deployment: &Deployment,
    key: &str,
    command: &Command,
) -> Result<(), Error> {
    let channel = broker::confirm_channel(connection).await?;
    publish(&channel, deployment, key, command).await
}

async fn publish(
    channel: &Channel,
    deployment: &Deployment,
    key: &str,
    command: &impl Serialize,
) -> Result<(), Error> {
    declare(channel, deployment).await?;
    let body = serde_json::to_vec(command).map_err(Error::EventSerialize)?;
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_type(COMMAND_TYPE.into())
        .with_app_id(wire::APP_ID.into());
    // Not mandatory: with no worker running, nobody has to hear it (a pause is in its marker).
    let confirm = channel
        .basic_publish(
            deployment.control_exchange.as_str().into(),
            topology::short_name("routing key", key)?,
            lapin::options::BasicPublishOptions::default(),
            &body,
            properties,
        )
        .await
        .map_err(Error::broker("basic.publish"))?;
    let confirmation = confirm.await.map_err(Error::broker("publisher confirm"))?;
    let _ = channel.close(200, "sent".into()).await;
    if confirmation.is_nack() {
        return Err(Error::Nacked {
            queue: deployment.control_exchange.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_tagged_json() {
        let pause = Command::Pause {
            queue: "mail".into(),
        };
        let json = serde_json::to_string(&pause).expect("json");
        assert_eq!(json, r#"{"command":"pause","queue":"mail"}"#);
        assert_eq!(serde_json::from_str::<Command>(&json).ok(), Some(pause));
        let stop: Command = serde_json::from_str(r#"{"command":"stop"}"#).expect("stop");
        assert_eq!(stop, Command::Stop);
        let pause = ScheduleCommand::PauseSchedule {
            schedule: "nightly".into(),
        };
        let json = serde_json::to_string(&pause).expect("json");
        assert_eq!(json, r#"{"command":"pause_schedule","schedule":"nightly"}"#);
    }
}

//! Which schedules are paused, as the active scheduler knows it: the markers
//! (`control::schedule_pause_marker`) read when it takes over, then the operators' commands
//! (`control::ScheduleCommand`, routing key `control::SCHEDULER_KEY`) as they come. The
//! command queue is bound before the markers are read, as a worker does for queue pauses, so
//! a pause is seen one way or the other: issued before the binding, in its marker; after it,
//! as a command. No check runs per tick (a passive declare that finds no marker costs a
//! round trip and makes the broker close a channel, which lapin logs as an error).

use std::collections::BTreeSet;

use futures_lite::StreamExt;
use lapin::{
    options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
    Connection, Consumer,
};
use tracing::{info, warn};

use crate::{
    control::{self, ScheduleCommand},
    deployment::Deployment,
    error::Error,
};

/// The paused schedules and the commands that change them.
pub(crate) struct Pauses {
    paused: BTreeSet<String>,
    commands: Consumer,
}

impl Pauses {
    /// Binds an exclusive queue to the scheduler's key, then reads the markers of `names`.
    pub(crate) async fn subscribe(
        connection: &Connection,
        deployment: &Deployment,
        names: &[String],
    ) -> Result<Pauses, Error> {
        let channel = connection
            .create_channel()
            .await
            .map_err(Error::broker("channel.open"))?;
        control::declare(&channel, deployment).await?;
        let own = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        let queue = channel
            .queue_declare("".into(), own, FieldTable::default())
            .await
            .map_err(Error::broker("queue.declare"))?;
        channel
            .queue_bind(
                queue.name().clone(),
                deployment.control_exchange.as_str().into(),
                control::SCHEDULER_KEY.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(Error::broker("queue.bind"))?;
        let no_ack = BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        };
        let commands = channel
            .basic_consume(
                queue.name().clone(),
                "palermo scheduler commands".into(),
                no_ack,
                FieldTable::default(),
            )
            .await
            .map_err(Error::broker("basic.consume"))?;
        let paused = control::paused_schedules(connection, deployment, names).await?;
        if !paused.is_empty() {
            info!(?paused, "paused schedules: their ticks are skipped");
        }
        Ok(Pauses { paused, commands })
    }

    /// Whether schedule `name` is paused.
    pub(crate) fn is_paused(&self, name: &str) -> bool {
        self.paused.contains(name)
    }

    /// Waits for the next command and applies it; an error when the consumer ended (the
    /// connection is gone).
    pub(crate) async fn next(&mut self) -> Result<(), Error> {
        let delivery = match self.commands.next().await {
            Some(delivery) => delivery.map_err(Error::broker("basic.deliver"))?,
            None => {
                return Err(Error::ConsumerCancelled {
                    queue: "the scheduler's command queue".into(),
                })
            }
        };
        match serde_json::from_slice::<ScheduleCommand>(&delivery.data) {
            Ok(ScheduleCommand::PauseSchedule { schedule }) => {
                info!(%schedule, "schedule paused: its ticks are skipped");
                self.paused.insert(schedule);
            }
            Ok(ScheduleCommand::ResumeSchedule { schedule }) => {
                info!(%schedule, "schedule resumed");
                self.paused.remove(&schedule);
            }
            Err(e) => warn!(error = %e, "a scheduler command that is not one; ignored"),
        }
        Ok(())
    }
}

//! The worker's end of the control plane ([`crate::control`]): what it applied (running,
//! quiet or stopping; which of its queues are paused), and the task that listens for
//! commands.
//!
//! The applied state is a `watch` value: slots compare the queues they consume with it and
//! start over when it changes (`serve.rs`), the heartbeat sends a beat at once so that the
//! admin side sees it within a second. The pause markers are the truth about pauses: they are
//! read when the worker connects (before any slot consumes, `link::connect`) and each time
//! the listener has bound its queue again; the broadcast commands change the state between
//! two reads.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use futures_lite::StreamExt;
use lapin::{
    options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
    Connection, Consumer,
};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::{link::Link, Shared};
use crate::{
    control::{self, Command},
    error::Error,
    shutdown::{Shutdown, Trigger},
};

/// How long the listener waits before binding again after its channel alone closed.
const RETRY: Duration = Duration::from_secs(1);

/// Whether the worker takes jobs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Consuming every queue that is not paused.
    #[default]
    Running,
    /// Quieted: no new jobs, running ones finish, still connected.
    Quiet,
    /// A stop was requested (a signal or a `stop` command).
    Stopping,
}

impl Mode {
    /// As heartbeats carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Running => "running",
            Mode::Quiet => "quiet",
            Mode::Stopping => "stopping",
        }
    }
}

/// What the worker applied of the operators' commands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    pub mode: Mode,
    /// Its queues that are paused.
    pub paused: BTreeSet<String>,
}

impl Applied {
    /// The positions in `queues` of those a slot consumes now.
    pub fn consumed(&self, queues: &[String]) -> Vec<usize> {
        if self.mode != Mode::Running {
            return Vec::new();
        }
        (0..queues.len())
            .filter(|&i| !self.paused.contains(&queues[i]))
            .collect()
    }
}

/// The applied state, shared by the listener, the slots and the heartbeat.
#[derive(Debug)]
pub(crate) struct Control(watch::Sender<Applied>);

impl Default for Control {
    fn default() -> Self {
        Control(watch::channel(Applied::default()).0)
    }
}

impl Control {
    pub fn applied(&self) -> Applied {
        self.0.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Applied> {
        self.0.subscribe()
    }

    /// Sets the paused queues to what the markers say.
    pub fn set_paused(&self, paused: BTreeSet<String>) {
        self.0.send_if_modified(|applied| {
            let changed = applied.paused != paused;
            applied.paused = paused;
            changed
        });
    }

    /// Records that the worker stops (it takes nothing new from now on).
    pub fn stopping(&self) {
        self.0.send_if_modified(|applied| {
            let changed = applied.mode != Mode::Stopping;
            applied.mode = Mode::Stopping;
            changed
        });
    }

    fn apply(&self, command: &Command, queues: &[String]) {
        self.0.send_if_modified(|applied| match command {
            Command::Pause { queue } if queues.contains(queue) => {
                applied.paused.insert(queue.clone())
            }
            Command::Resume { queue } => applied.paused.remove(queue),
            Command::Quiet if applied.mode == Mode::Running => {
                applied.mode = Mode::Quiet;
                true
            }
            _ => false,
        });
    }
}

/// Reads the pause markers of the worker's queues on `connection` into its state.
pub(crate) async fn read_markers(shared: &Shared, connection: &Connection) -> Result<(), Error> {
    let config = &shared.config;
    let paused = control::paused(connection, &config.deployment, &config.queues).await?;
    if !paused.is_empty() {
        info!(queues = ?paused, "paused queues are not consumed until resumed");
    }
    shared.control.set_paused(paused);
    Ok(())
}

/// Listens for commands until the task is aborted, binding again on every new connection.
/// `stop` is the worker's own stop trigger (a `stop` command pulls it).
pub(crate) async fn listen(
    shared: Arc<Shared>,
    mut link: Link,
    stop: Arc<Trigger>,
    mut shutdown: Shutdown,
) {
    let mut dead = 0;
    loop {
        let linked = tokio::select! {
            () = shutdown.requested() => return,
            linked = link.newer_than(dead) => match linked {
                Some(linked) => linked,
                None => return,
            },
        };
        match subscribe(&shared, &linked.connection).await {
            Ok(mut commands) => {
                while let Some(delivery) = commands.next().await {
                    let Ok(delivery) = delivery else { break };
                    match serde_json::from_slice::<Command>(&delivery.data) {
                        Ok(command) => obey(&shared, &stop, &command),
                        Err(e) => {
                            warn!(error = %e, "ignoring a control message that is not a command")
                        }
                    }
                }
            }
            Err(e) => debug!(error = %e, "cannot listen for commands yet"),
        }
        if linked.connection.status().connected() {
            tokio::time::sleep(RETRY).await;
        } else {
            dead = linked.generation;
        }
    }
}

/// Binds an exclusive queue to this worker's key and the broadcast key, then reads the
/// markers (a pause issued before the binding is seen there, one after it as a command).
async fn subscribe(shared: &Shared, connection: &Connection) -> Result<Consumer, Error> {
    let deployment = &shared.config.deployment;
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
    let run_key = control::worker_key(&shared.run_id.to_string());
    for key in [run_key.as_str(), control::BROADCAST_KEY] {
        channel
            .queue_bind(
                queue.name().clone(),
                deployment.control_exchange.as_str().into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(Error::broker("queue.bind"))?;
    }
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let consumer = channel
        .basic_consume(
            queue.name().clone(),
            format!("{}:control", shared.tag_prefix).into(),
            no_ack,
            FieldTable::default(),
        )
        .await
        .map_err(Error::broker("basic.consume"))?;
    read_markers(shared, connection).await?;
    Ok(consumer)
}

fn obey(shared: &Shared, stop: &Trigger, command: &Command) {
    info!(worker = %shared.identity, ?command, "control command received");
    match command {
        Command::Stop => {
            shared.control.stopping();
            stop.stop();
        }
        command => shared.control.apply(command, &shared.config.queues),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paused_queues_and_quiet_are_not_consumed() {
        let queues = ["a".to_string(), "b".to_string()];
        let control = Control::default();
        assert_eq!(control.applied().consumed(&queues), [0, 1]);
        control.apply(&Command::Pause { queue: "b".into() }, &queues);
        control.apply(
            &Command::Pause {
                queue: "other".into(),
            },
            &queues,
        );
        assert_eq!(control.applied().consumed(&queues), [0]);
        control.apply(&Command::Resume { queue: "b".into() }, &queues);
        assert_eq!(control.applied().consumed(&queues), [0, 1]);
        control.apply(&Command::Quiet, &queues);
        assert!(control.applied().consumed(&queues).is_empty());
        control.stopping();
        control.apply(&Command::Quiet, &queues);
        assert_eq!(control.applied().mode, Mode::Stopping);
    }
}

//! A slot for the life of the worker: start it, run it, and when its channel dies start it
//! again, so that a worker never stays connected but not consuming (celery#3201).
//!
//! - The connection died: wait for the [`super::link::Keeper`] to make a new one, then start
//!   on it. An idle slot resumes as soon as the worker is reconnected; a busy one after its
//!   job ends (the job is not cut short, but cannot be acked: the broker runs it again).
//! - Only the channel died (RabbitMQ's `consumer_timeout`, a queue deleted under its
//!   consumer, a refused operation): open a new channel on the same connection after a pause
//!   from the reconnect backoff, declaring the queues again.
//!
//! This is also where a channel closed by `consumer_timeout` is explained, since the broker's
//! message alone ("delivery acknowledgement timed out") does not say what to do about it.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tracing::{debug, info, warn};

use super::{
    link::{Link, Linked},
    slot::{Ended, Slot},
    Shared,
};
use crate::{broker, broker::topology, error::Error, shutdown::Shutdown};

/// A slot that ran this long starts its backoff over after its next failure.
const RESET_AFTER: Duration = Duration::from_secs(60);

/// Runs slot `number`, already started on the first connection as `first`, until the
/// worker stops.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    mut link: Link,
    number: usize,
    first: Slot,
    mut shutdown: Shutdown,
) -> Result<(), Error> {
    let mut current = Some((first, link.current()));
    // The newest generation whose connection died under this slot.
    let mut dead = 0;
    let mut failures = 0;
    // Whether the last restart was for the channel alone (the worker logged no reconnect).
    let mut channel_only = false;
    loop {
        let (slot, linked) = match current.take() {
            Some(started) => started,
            None => {
                let linked = tokio::select! {
                    () = shutdown.requested() => return Ok(()),
                    linked = link.newer_than(dead) => match linked {
                        Some(linked) => linked,
                        None => return Ok(()),
                    },
                };
                let started = tokio::select! {
                    () = shutdown.requested() => return Ok(()),
                    started = start(&shared, &linked, number) => started,
                };
                match started {
                    Ok(slot) => {
                        if std::mem::take(&mut channel_only) {
                            info!(
                                slot = number,
                                "the slot is consuming again on a new channel"
                            );
                        } else {
                            debug!(
                                slot = number,
                                generation = linked.generation,
                                "slot consuming again"
                            );
                        }
                        (slot, linked)
                    }
                    Err(e) if !linked.connection.status().connected() => {
                        debug!(slot = number, error = %e, "the connection died while the slot started; waiting for the next one");
                        dead = linked.generation;
                        continue;
                    }
                    Err(e) => {
                        failures += 1;
                        let delay = shared.config.reconnect.delay(failures);
                        warn!(slot = number, error = %e, retry_in = ?delay, "the slot cannot consume yet; trying again");
                        if pause(delay, &mut shutdown).await {
                            return Ok(());
                        }
                        continue;
                    }
                }
            }
        };

        let started = Instant::now();
        let ended = run_until_changed(&shared, slot, &shutdown).await;
        if started.elapsed() > RESET_AFTER {
            failures = 0;
        }
        match ended {
            Ended::Stopped if shutdown.is_requested() => return Ok(()),
            // A queue was paused or resumed, or the worker quieted: start over at once on
            // the same connection, consuming what it should now.
            Ended::Stopped => {}
            Ended::Lost(e) if !linked.connection.status().connected() => {
                debug!(slot = number, error = %e, "the slot's connection is gone; waiting for the worker to reconnect");
                dead = linked.generation;
            }
            ended => {
                channel_only = true;
                failures += 1;
                let delay = shared.config.reconnect.delay(failures);
                match &ended {
                    Ended::Lost(e) => {
                        warn!(slot = number, error = %e, restart_in = ?delay, "the slot's channel closed; opening a new one")
                    }
                    _ => {
                        warn!(slot = number, restart_in = ?delay, "the broker cancelled a consumer of the slot; consuming again")
                    }
                }
                if pause(delay, &mut shutdown).await {
                    return Ok(());
                }
            }
        }
    }
}

/// Runs `slot` until the worker stops or the queues it should consume change (a pause, a
/// resume, quiet): then, as at a stop, its consumers are cancelled at once, the running job
/// finishes and is acked, and the slot returns [`Ended::Stopped`].
async fn run_until_changed(shared: &Shared, slot: Slot, shutdown: &Shutdown) -> Ended {
    let (trigger, local) = crate::shutdown::channel();
    let consumed = slot.consumed().to_vec();
    let mut control = shared.control.subscribe();
    let mut stop = shutdown.clone();
    let queues = shared.config.queues.clone();
    let watcher = tokio::spawn(async move {
        tokio::select! {
            () = stop.requested() => {}
            _ = control.wait_for(|applied| applied.consumed(&queues) != consumed) => {}
        }
        trigger.stop();
    });
    let ended = slot.run(local).await;
    watcher.abort();
    ended
}

/// Opens a channel on `linked`, declares the worker's queues (one may have been deleted)
/// and starts consuming.
async fn start(shared: &Arc<Shared>, linked: &Linked, number: usize) -> Result<Slot, Error> {
    let channel = broker::confirm_channel(&linked.connection).await?;
    // A channel closed under the slot may have been a publish to a deleted object (404):
    // declare what the slot publishes to again (heal.rs).
    topology::declare_exchange(&channel).await?;
    let (failed, queue_type) = (
        &shared.config.deployment.failed_queue,
        shared.config.deployment.queue_type,
    );
    topology::declare_queue(&channel, failed, queue_type).await?;
    shared.delays.forget();
    for queue in &shared.config.queues {
        let max_priority = shared.config.deployment.priorities.of(queue);
        topology::declare_job_queue(&channel, queue, queue_type, max_priority).await?;
    }
    Slot::start(shared.clone(), channel, linked.connection.clone(), number).await
}

/// Sleeps `delay`; `true` when a stop was requested meanwhile.
async fn pause(delay: Duration, shutdown: &mut Shutdown) -> bool {
    tokio::select! {
        () = shutdown.requested() => true,
        () = tokio::time::sleep(delay) => false,
    }
}

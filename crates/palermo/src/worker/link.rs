//! The worker's broker connection, kept up across broker restarts and network cuts.
//!
//! One task, the [`Keeper`], owns the connection: it waits until the connection dies, logs
//! that once, reconnects with the worker's [`crate::WorkerConfig::reconnect`] backoff,
//! declares the topology again and publishes the new connection. Slots and the heartbeat
//! watch it through a [`Link`]: each takes the newest connection when its own channel dies,
//! so an idle slot consumes again as soon as the worker is reconnected and a busy one after
//! its job ends. Jobs are never cut short by a reconnect; a job whose channel died cannot be
//! acked, and the broker runs it again (at-least-once, docs/reliability.md).
//!
//! Each connection has a generation number, so that a slot can ask for "a connection newer
//! than the one that died under me" without racing the keeper.

use std::{sync::Arc, time::Duration};

use lapin::Connection;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::Shared;
use crate::{
    broker,
    broker::topology,
    error::Error,
    reconnect::{self, Schedule},
    shutdown::Shutdown,
};

/// A connection and its generation (1 for the first, then one more per reconnect).
#[derive(Clone)]
pub(crate) struct Linked {
    pub generation: u64,
    pub connection: Arc<Connection>,
}

/// What slots and the heartbeat hold to find the worker's current connection.
#[derive(Clone)]
pub(crate) struct Link(watch::Receiver<Linked>);

impl Link {
    /// The current connection, whatever its state.
    pub fn current(&self) -> Linked {
        self.0.borrow().clone()
    }

    /// Waits for a connection newer than generation `dead`; `None` once the keeper stopped.
    pub async fn newer_than(&mut self, dead: u64) -> Option<Linked> {
        let linked = self
            .0
            .wait_for(|linked| linked.generation > dead)
            .await
            .ok()?;
        Some(linked.clone())
    }
}

/// Owns the worker's connection and replaces it when it dies.
pub(crate) struct Keeper {
    shared: Arc<Shared>,
    current: watch::Sender<Linked>,
}

impl Keeper {
    /// A keeper starting with `connection` (connected and declared by [`connect`]).
    pub fn new(shared: Arc<Shared>, connection: Connection) -> (Keeper, Link) {
        shared.blocked.follow(&connection, shared.identity.clone());
        let linked = Linked {
            generation: 1,
            connection: Arc::new(connection),
        };
        let (current, watcher) = watch::channel(linked);
        (Keeper { shared, current }, Link(watcher))
    }

    /// The current connection.
    pub fn connection(&self) -> Arc<Connection> {
        self.current.borrow().connection.clone()
    }

    /// Keeps a connection up until `stop`; returns the connection of the moment, for the
    /// caller to close.
    pub async fn run(self, mut stop: Shutdown) -> Option<Arc<Connection>> {
        let mut schedule: Option<Schedule> = None;
        loop {
            let linked = self.current.borrow().clone();
            let connected_at = std::time::Instant::now();
            tokio::select! {
                () = stop.requested() => return Some(linked.connection),
                () = reconnect::lost(&linked.connection) => {}
            }
            warn!(
                worker = %self.shared.identity,
                generation = linked.generation,
                "lost the broker connection; reconnecting (running jobs go on, but their messages go back to the queue and run again)"
            );
            let attempts =
                Schedule::resume(&mut schedule, self.shared.config.reconnect, connected_at);
            let reconnected =
                reconnect::retry_until(attempts, None, "worker", || connect(&self.shared));
            let connection = tokio::select! {
                () = stop.requested() => return None,
                connection = reconnected => match connection {
                    Ok(connection) => connection,
                    // Without a deadline it only ends with a connection.
                    Err(_) => return None,
                },
            };
            // Delay queues may need declaring again (a new broker node, a wiped one).
            self.shared.delays.forget();
            (self.shared.blocked).follow(&connection, self.shared.identity.clone());
            info!(
                worker = %self.shared.identity,
                generation = linked.generation + 1,
                after = ?attempts.elapsed(),
                attempts = attempts.attempts(),
                "reconnected to the broker; resuming consumption"
            );
            self.current.send_replace(Linked {
                generation: linked.generation + 1,
                connection: Arc::new(connection),
            });
        }
    }
}

/// [`connect`] for a worker's start: a setup step the broker failed after the connection
/// was made (not a refused login, permission or argument) is tried again, twice, a second
/// apart. RabbitMQ 4.0 answered `INTERNAL_ERROR` to a consume of the cancellations stream
/// while many workers created it at once on a fresh broker; a later try found it whole.
pub(crate) async fn connect_at_start(shared: &Shared) -> Result<Connection, Error> {
    for _ in 0..2 {
        match connect(shared).await {
            Err(e @ Error::Broker { .. }) => {
                warn!(error = %e, "setting up on the broker failed; trying again in a second");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
    connect(shared).await
}

/// Connects, declares the exchange, the failed queue and the worker's queues (harmless
/// when they exist, essential when the broker lost them), and reads their pause markers.
pub(crate) async fn connect(shared: &Shared) -> Result<Connection, Error> {
    let config = &shared.config;
    let connection = broker::connect(&config.deployment.amqp_url, &shared.identity).await?;
    let declared = async {
        let channel = broker::confirm_channel(&connection).await?;
        topology::declare_exchange(&channel).await?;
        topology::declare_queue(
            &channel,
            &config.deployment.failed_queue,
            config.deployment.queue_type,
        )
        .await?;
        for queue in &config.queues {
            let max_priority = config.deployment.priorities.of(queue);
            topology::declare_job_queue(
                &channel,
                queue,
                config.deployment.queue_type,
                max_priority,
            )
            .await?;
        }
        if let Err(e) = channel.close(200, "declared".into()).await {
            debug!(error = %e, "closing the declaring channel failed");
        }
        // Before any slot consumes on this connection: a pause holds from the first delivery,
        // and so does a cancellation.
        super::control::read_markers(shared, &connection).await?;
        super::cancel::catch_up(shared, &connection).await
    };
    match declared.await {
        Ok(()) => Ok(connection),
        Err(e) => {
            close(&connection, "declaring the topology failed").await;
            Err(e)
        }
    }
}

/// Closes a connection if it is still open; a dead one needs nothing.
pub(crate) async fn close(connection: &Connection, why: &str) {
    if !connection.status().connected() {
        return;
    }
    let closing = connection.close(200, why.into());
    match tokio::time::timeout(Duration::from_secs(5), closing).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "closing the broker connection failed"),
        Err(_) => warn!("the broker did not confirm closing the connection in time"),
    }
}

//! Resource alarms: when RabbitMQ runs low on disk or memory it blocks the connections that
//! publish, and a publish then waits, silently, until the alarm clears.
//!
//! lapin advertises the `connection.blocked` capability, so the broker says so
//! (`connection.blocked` with a reason such as `low on disk`, later `connection.unblocked`),
//! and lapin holds every outgoing frame meanwhile. [`Blocked`] follows those notices for one
//! process: the [`crate::Client`] uses it to wait a bounded time and then name the reason
//! ([`crate::Error::Blocked`]) instead of hanging a web request, the worker to log the block
//! once at each end and report it in its heartbeats.

use std::sync::Arc;

use futures_lite::StreamExt;
use lapin::{Connection, Event};
use tokio::sync::watch;
use tracing::{info, warn};

/// Whether (and why) the broker blocks a process's connection; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Blocked {
    reason: Arc<watch::Sender<Option<String>>>,
}

impl Default for Blocked {
    fn default() -> Self {
        Self {
            reason: Arc::new(watch::channel(None).0),
        }
    }
}

impl Blocked {
    /// The broker's reason while it blocks the connection.
    pub fn reason(&self) -> Option<String> {
        self.reason.borrow().clone()
    }

    /// A receiver that wakes at every change of the reason.
    pub fn changes(&self) -> watch::Receiver<Option<String>> {
        self.reason.subscribe()
    }

    /// Completes once the connection is not blocked (at once if it is not).
    pub async fn unblocked(&self) {
        let mut receiver = self.reason.subscribe();
        // The sender lives in `self`, so the wait cannot fail.
        let _ = receiver.wait_for(Option::is_none).await;
    }

    /// Follows the blocked/unblocked notices of `connection` (a new one starts unblocked),
    /// logging each change once as `who`. The task ends with the connection.
    ///
    /// It must be the connection's only events listener: lapin hands each event to one
    /// listener, not to all of them.
    pub fn follow(&self, connection: &Connection, who: String) {
        self.set(None, &who);
        let mut events = connection.events_listener();
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                match event {
                    Event::ConnectionBlocked(reason) => this.set(Some(reason), &who),
                    Event::ConnectionUnblocked => this.set(None, &who),
                    _ => {}
                }
            }
        });
    }

    fn set(&self, reason: Option<String>, who: &str) {
        let changed = self.reason.send_if_modified(|current| {
            let changed = *current != reason;
            current.clone_from(&reason);
            changed
        });
        if !changed {
            return;
        }
        match reason {
            Some(reason) => warn!(
                who, %reason,
                "RabbitMQ is blocking publishers (a resource alarm); publishes and acks wait until it clears"
            ),
            None => info!(who, "RabbitMQ unblocked the connection; publishing again"),
        }
    }
}

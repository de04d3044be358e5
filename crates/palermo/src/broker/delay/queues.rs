//! [`DelayQueues`]: the delay layout as one connection uses it, declared lazily and declared
//! again after a reconnect.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use lapin::{BasicProperties, Channel};
use tokio::sync::OnceCell;

use super::{bind_queue, declare, routing_key, whole_seconds, Kind, Layout, LEVELS, MAX_DELAY};
use crate::{
    broker::priority::Priorities,
    broker::topology::{self, QueueType},
    broker::{self, Pending},
    error::Error,
};

/// The delay layout as one client or worker uses it: declared once, each job queue's delivery
/// binding declared once. Share one per connection, and call [`DelayQueues::forget`] after a
/// reconnect.
#[derive(Debug, Default)]
pub struct DelayQueues {
    layout: Layout,
    /// The priority queues (`crate::broker::priority`), used when a destination queue is declared.
    priorities: Priorities,
    declared: Mutex<Arc<Declared>>,
}

/// What was declared since the last [`DelayQueues::forget`]: replaced whole, so that a
/// declare still running on a dead connection cannot mark the new one declared.
#[derive(Debug, Default)]
struct Declared {
    layout: OnceCell<()>,
    bound: Mutex<HashSet<String>>,
}

impl DelayQueues {
    /// The delay queues of a `queue_type` deployment.
    pub fn new(queue_type: QueueType) -> Self {
        Self {
            layout: Layout::of(queue_type),
            ..Self::default()
        }
    }

    /// These delay queues, declaring destination job queues as `priorities` says.
    pub fn with_priorities(mut self, priorities: Priorities) -> Self {
        self.priorities = priorities;
        self
    }

    /// Publishes a job that lands in `queue` after `delay` (rounded up to whole seconds),
    /// without waiting for the confirm. Declares the delay layout, `queue` and its delivery
    /// binding the first time.
    pub async fn publish(
        &self,
        channel: &Channel,
        kind: Kind,
        delay: Duration,
        queue: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<Pending, Error> {
        let secs = whole_seconds(delay).ok_or(Error::DelayTooLong {
            requested: delay,
            max: MAX_DELAY,
        })?;
        let declared = self.declared();
        declared
            .layout
            .get_or_try_init(|| declare(channel, self.layout))
            .await?;
        self.bind(&declared, channel, queue).await?;
        let key = routing_key(kind, secs, queue);
        broker::publish_via(
            channel,
            &self.layout.exchange(LEVELS - 1),
            &key,
            queue,
            body,
            properties,
        )
        .await
    }

    /// Forgets what was declared: the next publish declares the layout and bindings again
    /// (after a reconnect the broker may be a new node, or have lost them).
    pub fn forget(&self) {
        *lock(&self.declared) = Arc::default();
    }

    fn declared(&self) -> Arc<Declared> {
        lock(&self.declared).clone()
    }

    async fn bind(&self, declared: &Declared, channel: &Channel, queue: &str) -> Result<(), Error> {
        if lock(&declared.bound).contains(queue) {
            return Ok(());
        }
        let queue_type = self.layout.queue_type;
        let max_priority = self.priorities.of(queue);
        topology::declare_job_queue(channel, queue, queue_type, max_priority).await?;
        bind_queue(channel, queue, self.layout).await?;
        lock(&declared.bound).insert(queue.to_string());
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A set of names, or a pointer to one, cannot be left inconsistent by a panic.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

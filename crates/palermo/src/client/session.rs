//! A [`crate::Client`]'s connection to the broker, made again after it drops.
//!
//! A client lives as long as the application (a web server's), so a broker restart must not
//! leave it broken. Each connection is a [`Session`] with its own caches of declared queues
//! and delay topology: a new session declares everything again, in case the broker came back
//! empty. An enqueue that finds the session dead reconnects, with backoff, for up to the
//! client's reconnect wait, then fails with [`Error::Unavailable`]; it never reports success
//! for a message the broker has not confirmed. One task reconnects at a time; the others wait
//! for it.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Duration,
};

use lapin::{Channel, Connection};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::{
    broker::blocked::Blocked,
    broker::delay::DelayQueues,
    broker::priority::Priorities,
    broker::topology::{self, QueueType},
    broker::{self, Addresses},
    deployment::Deployment,
    error::Error,
    reconnect::{self, Schedule},
    retry::Backoff,
};

/// How a client behaves while the broker is unreachable (from its
/// [`crate::ClientConfig`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Reconnect {
    /// How long an enqueue that finds the connection down keeps trying to reconnect.
    pub wait: Duration,
    /// The delays between attempts.
    pub backoff: Backoff,
}

/// One connection and its confirm-mode channel, with what was declared on them.
pub(crate) struct Session {
    pub connection: Connection,
    pub channel: Channel,
    /// Queues declared and bound on this connection (declare before the first publish).
    declared: Mutex<HashSet<String>>,
    /// The delay queues, declared at the first delayed enqueue.
    pub delays: DelayQueues,
}

impl Session {
    async fn open(
        addresses: &Addresses,
        queue_type: QueueType,
        priorities: Priorities,
    ) -> Result<Session, Error> {
        let connection = broker::connect_to(addresses, "palermo client", broker::HEARTBEAT).await?;
        let channel = broker::confirm_channel(&connection).await?;
        topology::declare_exchange(&channel).await?;
        Ok(Session {
            connection,
            channel,
            declared: Mutex::new(HashSet::new()),
            delays: DelayQueues::new(queue_type).with_priorities(priorities),
        })
    }

    /// Whether its connection and channel are open.
    pub fn usable(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }

    /// Declares `queue` and its binding, once per session.
    pub async fn ensure_declared(
        &self,
        queue: &str,
        queue_type: QueueType,
        max_priority: Option<u8>,
    ) -> Result<(), Error> {
        if self.lock_declared().contains(queue) {
            return Ok(());
        }
        topology::declare_job_queue(&self.channel, queue, queue_type, max_priority).await?;
        self.lock_declared().insert(queue.to_string());
        Ok(())
    }

    /// Forgets that `queue` was declared (it came back unroutable: deleted), so the next
    /// publish declares it again.
    pub fn forget_declared(&self, queue: &str) {
        self.lock_declared().remove(queue);
    }

    fn lock_declared(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A panic while holding this lock cannot leave the set inconsistent.
        self.declared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The client's current session, and the lock that lets one task at a time replace it.
pub(crate) struct Sessions {
    addresses: Addresses,
    pub queue_type: QueueType,
    /// The priority queues ([`crate::broker::priority`]), declared so by every session.
    pub priorities: Priorities,
    current: RwLock<Arc<Session>>,
    reconnecting: tokio::sync::Mutex<()>,
    closed: AtomicBool,
    /// Whether the broker blocks the current connection (a resource alarm), and why.
    pub blocked: Blocked,
}

impl Sessions {
    /// Connects the first session to `deployment`'s broker: at start, an unreachable broker
    /// is an error at once.
    pub async fn connect(deployment: &Deployment) -> Result<Sessions, Error> {
        let addresses = Addresses::parse(&deployment.amqp_url)?;
        let (queue_type, priorities) = (deployment.queue_type, deployment.priorities.clone());
        // Priorities on quorum queues need a broker that orders them (RabbitMQ 4.0).
        crate::broker::priority::check_broker_at(&deployment.amqp_url, queue_type, &priorities)
            .await?;
        let session = Session::open(&addresses, queue_type, priorities.clone()).await?;
        let blocked = Blocked::default();
        blocked.follow(&session.connection, "client".into());
        Ok(Sessions {
            blocked,
            addresses,
            queue_type,
            priorities,
            current: RwLock::new(Arc::new(session)),
            reconnecting: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
        })
    }

    /// A usable session: the current one, or a new one made within `policy.wait`.
    pub async fn get(&self, policy: &Reconnect) -> Result<Arc<Session>, Error> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let current = self.current();
        if current.usable() {
            return Ok(current);
        }
        self.reconnect(policy).await
    }

    /// Marks the client closed and closes its connection.
    pub async fn close(&self) -> Result<(), Error> {
        self.closed.store(true, Ordering::Release);
        let session = self.current();
        if !session.connection.status().connected() {
            return Ok(());
        }
        session
            .connection
            .close(200, "client closed".into())
            .await
            .map_err(Error::broker("connection.close"))
    }

    /// Forgets what the current session declared for `queue` (a publish came back
    /// unroutable: something was deleted), so the next publish declares it again.
    pub fn forget(&self, queue: &str) {
        let session = self.current();
        session.forget_declared(queue);
        session.delays.forget();
    }

    /// Closes the current session's connection, so that the next [`Sessions::get`] opens a
    /// new one (on whichever node of the list answers): the way out of a channel the broker
    /// keeps refusing publishes on.
    pub async fn renew(&self) {
        let session = self.current();
        if let Err(e) = session
            .connection
            .close(200, "renewed after a nack".into())
            .await
        {
            warn!(error = %e, "closing the client's connection after a nack");
        }
    }

    fn current(&self) -> Arc<Session> {
        // Replacing an `Arc` cannot leave it inconsistent.
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    async fn reconnect(&self, policy: &Reconnect) -> Result<Arc<Session>, Error> {
        let started = Instant::now();
        let deadline = started + policy.wait;
        let unavailable = |attempts, reason: String| Error::Unavailable {
            url: self.addresses.to_string(),
            waited: started.elapsed(),
            attempts,
            reason,
        };
        let Ok(_one_at_a_time) = tokio::time::timeout_at(deadline, self.reconnecting.lock()).await
        else {
            return Err(unavailable(0, "another task is still reconnecting".into()));
        };
        // Another task may have reconnected while this one waited.
        let current = self.current();
        if current.usable() {
            return Ok(current);
        }
        warn!(url = %self.addresses, "the client lost its broker connection; reconnecting");
        let mut schedule = Schedule::new(policy.backoff);
        let opened = reconnect::retry_until(&mut schedule, Some(deadline), "client", || {
            Session::open(&self.addresses, self.queue_type, self.priorities.clone())
        });
        let session = match opened.await {
            Ok(session) => Arc::new(session),
            Err(gave_up) => return Err(unavailable(gave_up.attempts, gave_up.reason)),
        };
        self.blocked.follow(&session.connection, "client".into());
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = session.clone();
        info!(after = ?started.elapsed(), attempts = schedule.attempts() + 1, "the client reconnected to the broker");
        Ok(session)
    }
}

//! Queues as the admin side sees them: depths and consumers from AMQP (passive declares:
//! nothing is created), unacked jobs from the alive workers' heartbeats (AMQP cannot count
//! them; a worker holds one unacked delivery per job it runs), open failures from the store,
//! and the jobs waiting in the delay queues. Also purging a job queue.
//!
//! [`BrokerAdmin`] owns one broker connection for a long-running admin process (the
//! dashboard): opened at first use, opened again when it has dropped, so a page rendered while
//! the broker is down says so and the next one after it is back works.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use futures_util::{stream, StreamExt};
use lapin::{options::QueuePurgeOptions, Connection};
use palermo::admin::{
    delay::{self, Layout},
    topology,
};
use serde::Serialize;
use tokio::sync::Mutex;

use crate::{
    error::{Rejection, Result, StoreError},
    filter::Filter,
    Requeuer, Store,
};

/// How many passive declares are in flight at once.
const PARALLEL_INSPECTIONS: usize = 16;

/// How long opening the broker connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One queue: what AMQP, the heartbeats and the store say about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueueRow {
    pub queue: String,
    /// Whether the broker has it (a queue named only by a failure may be gone).
    pub exists: bool,
    /// Messages waiting for a consumer (`None` when the queue does not exist).
    pub ready: Option<u32>,
    /// Jobs of this queue running on alive workers, as of their last heartbeat.
    pub unacked: u32,
    pub consumers: Option<u32>,
    /// Open failures of jobs from this queue.
    pub failed: i64,
    /// Whether an operator paused it (its pause marker exists; docs/admin.md, "Control").
    pub paused: bool,
}

/// Every known queue and the delay queues' contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueuesReport {
    /// Job queues, and the failed queue, by name.
    pub queues: Vec<QueueRow>,
    /// Failed jobs waiting in the delay queues for their next attempt.
    pub retrying: u64,
    /// Jobs enqueued for later or snoozed, waiting in the delay queues.
    pub scheduled: u64,
    /// Delayed jobs whose queue was deleted while they waited (quorum queues keep them in
    /// the orphans queue; docs/reliability.md).
    pub orphaned: u64,
    /// Whether the delay queues exist (they are declared at the first delayed job).
    pub delay_queues_declared: bool,
}

/// Every queue the alive workers serve, every queue with open failures, the failed queue
/// and `extra` (invalid names left out), with their pause state; and the delay queues'
/// contents (of the deployment's layout). Used by `palermo queues` and the dashboard.
pub async fn report(
    connection: &Connection,
    store: &Store,
    deployment: &palermo::Deployment,
    extra: &[String],
) -> Result<QueuesReport> {
    let (failed_queue, queue_type) = (&deployment.failed_queue, deployment.queue_type);
    let workers = store.workers().await?;
    let failed: BTreeMap<String, i64> = store.failed_per_queue().await?.into_iter().collect();
    let mut names: BTreeSet<String> = extra.iter().cloned().collect();
    let mut unacked: BTreeMap<String, u32> = BTreeMap::new();
    for worker in workers.iter().filter(|w| w.status == "alive") {
        names.extend(worker.queues.iter().cloned());
        for job in &worker.running {
            *unacked.entry(job.queue.clone()).or_default() += 1;
        }
    }
    names.extend(failed.keys().cloned());
    names.insert(failed_queue.to_string());
    names.retain(|name| topology::validate_queue_name(name).is_ok());
    let listed: Vec<String> = names.iter().cloned().collect();
    let paused = palermo::control::paused(connection, deployment, &listed).await?;

    let depths = stream::iter(names)
        .map(|queue| async move {
            let depth = topology::inspect(connection, &queue).await;
            (queue, depth)
        })
        .buffered(PARALLEL_INSPECTIONS)
        .collect::<Vec<_>>();
    let (depths, waiting) =
        futures_lite::future::zip(depths, delay::waiting(connection, Layout::of(queue_type))).await;
    let mut queues = Vec::with_capacity(depths.len());
    for (queue, depth) in depths {
        let depth = depth?;
        queues.push(QueueRow {
            exists: depth.is_some(),
            ready: depth.map(|d| d.ready),
            unacked: unacked.get(&queue).copied().unwrap_or(0),
            consumers: depth.map(|d| d.consumers),
            failed: failed.get(&queue).copied().unwrap_or(0),
            paused: paused.contains(&queue),
            queue,
        });
    }
    let waiting = waiting?;
    Ok(QueuesReport {
        queues,
        retrying: waiting.retrying,
        scheduled: waiting.scheduled,
        orphaned: waiting.orphaned,
        delay_queues_declared: waiting.declared,
    })
}

/// The broker side of the admin tools, over one lazily opened connection.
pub struct BrokerAdmin {
    deployment: palermo::Deployment,
    connection: Mutex<Option<Arc<Connection>>>,
}

impl std::fmt::Debug for BrokerAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerAdmin")
            .field(
                "url",
                &palermo::admin::broker::redact(&self.deployment.amqp_url),
            )
            .field("queue_type", &self.deployment.queue_type)
            .field("failed_queue", &self.deployment.failed_queue)
            .finish_non_exhaustive()
    }
}

impl BrokerAdmin {
    /// For `deployment`'s broker: its queue type, its failed queue, and its priority
    /// queues (declared the same way when a retry re-creates one). Connects at first use.
    pub fn new(deployment: palermo::Deployment) -> Self {
        BrokerAdmin {
            deployment,
            connection: Mutex::new(None),
        }
    }

    /// The failed queue's name.
    pub fn failed_queue(&self) -> &str {
        &self.deployment.failed_queue
    }

    /// The deployment it acts on.
    pub fn deployment(&self) -> &palermo::Deployment {
        &self.deployment
    }

    /// The open connection, or a new one if there is none or it dropped.
    pub async fn connection(&self) -> Result<Arc<Connection>> {
        let mut held = self.connection.lock().await;
        if let Some(connection) = held.as_ref().filter(|c| c.status().connected()) {
            return Ok(connection.clone());
        }
        let url = &self.deployment.amqp_url;
        let connect = palermo::admin::broker::connect(url, "palermo dashboard");
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| palermo::Error::ConnectTimeout {
                url: palermo::admin::broker::redact(url),
                timeout: CONNECT_TIMEOUT,
            })??;
        let connection = Arc::new(connection);
        *held = Some(connection.clone());
        Ok(connection)
    }

    /// [`report`] over this connection.
    pub async fn queues(&self, store: &Store, extra: &[String]) -> Result<QueuesReport> {
        let connection = self.connection().await?;
        report(&connection, store, &self.deployment, extra).await
    }

    /// One queue; `None` when neither the broker nor the store knows it.
    pub async fn queue(&self, store: &Store, name: &str) -> Result<Option<QueueRow>> {
        topology::validate_queue_name(name).map_err(palermo::Error::from)?;
        let connection = self.connection().await?;
        let depth = topology::inspect(&connection, name).await?;
        let failed = store
            .failed_per_queue()
            .await?
            .into_iter()
            .find(|(queue, _)| queue == name)
            .map_or(0, |(_, n)| n);
        let unacked = store
            .workers()
            .await?
            .iter()
            .filter(|w| w.status == "alive")
            .flat_map(|w| &w.running)
            .filter(|job| job.queue == name)
            .count();
        if depth.is_none() && failed == 0 {
            return Ok(None);
        }
        let queues = [name.to_string()];
        let paused = palermo::control::paused(&connection, &self.deployment, &queues).await?;
        Ok(Some(QueueRow {
            queue: name.to_string(),
            exists: depth.is_some(),
            ready: depth.map(|d| d.ready),
            unacked: u32::try_from(unacked).unwrap_or(u32::MAX),
            consumers: depth.map(|d| d.consumers),
            failed,
            paused: !paused.is_empty(),
        }))
    }

    /// Deletes the ready messages of a job queue; returns how many, or `None` when the
    /// queue does not exist. Unacked jobs (running now) are not touched. The failed queue
    /// (failures not yet recorded), the delay queues and invalid names are refused.
    pub async fn purge(&self, name: &str) -> Result<Option<u32>> {
        let refuse = |reason: &str| {
            StoreError::Rejected(vec![Rejection {
                id: name.to_string(),
                reason: reason.to_string(),
            }])
        };
        if let Err(reason) = topology::validate_queue_name(name) {
            return Err(refuse(&reason.to_string()));
        }
        if name == self.deployment.failed_queue {
            return Err(refuse("the failed queue holds failures not yet recorded; remove them from the failed list instead"));
        }
        if palermo::admin::delay::is_reserved(name) {
            return Err(refuse("delay queues are not purged from the dashboard"));
        }
        let connection = self.connection().await?;
        if topology::inspect(&connection, name).await?.is_none() {
            return Ok(None);
        }
        let channel = connection
            .create_channel()
            .await
            .map_err(palermo::Error::broker("channel.open"))?;
        let purged = channel
            .queue_purge(name.into(), QueuePurgeOptions::default())
            .await
            .map_err(palermo::Error::broker("queue.purge"))?;
        let _ = channel.close(200, "purged".into()).await;
        tracing::info!(queue = %name, messages = purged, "queue purged");
        Ok(Some(purged))
    }

    /// Retries failures by id, all or none (see [`Requeuer::retry`]); `actor` is recorded.
    pub async fn retry(&self, store: &Store, ids: &[String], actor: &str) -> Result<Vec<String>> {
        let connection = self.connection().await?;
        let mut requeuer = self.requeuer(store, &connection, actor).await?;
        requeuer.retry(ids).await
    }

    /// Retries every open failure matching `filter` (see [`Requeuer::retry_matching`]).
    pub async fn retry_matching(&self, store: &Store, filter: &Filter, actor: &str) -> Result<u64> {
        let connection = self.connection().await?;
        let mut requeuer = self.requeuer(store, &connection, actor).await?;
        requeuer.retry_matching(filter).await
    }

    async fn requeuer<'a>(
        &self,
        store: &'a Store,
        connection: &Connection,
        actor: &str,
    ) -> Result<Requeuer<'a>> {
        Requeuer::new(store, connection, actor, &self.deployment).await
    }
}

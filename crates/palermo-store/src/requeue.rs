//! Retrying failures: publish each job back to its original queue, then mark it retried.
//!
//! The order is what makes a retry safe. The failure is claimed first (`claim.rs`: a
//! row lock, so a second admin retrying it at the same moment waits, then is told it is
//! already retried, and by whom); the job is then published with a publisher confirm, and
//! only once the broker has confirmed it is stored does the claim commit, marking the failure
//! retried (and so hiding it from the list). A crash before the commit rolls the claim back
//! and leaves the job both in its queue and in the failed list: at worst it runs twice, if
//! someone retries it again. The other order could lose it (marked retried, never
//! published). Delivery stays at-least-once.
//!
//! The republished message is the original one, body and properties untouched, except for
//! the failure and retry headers, which are dropped, and a fresh attempt count
//! (`x-palermo-attempt: 1`). Its job id (`message_id`) stays, so a later failure of the same
//! job shows this one in its history. Nothing here needs the job's code: a failure whose job
//! no worker knows is retried like any other.

use std::collections::HashSet;

use lapin::{BasicProperties, Channel};
use palermo::admin::{broker, topology, wire};
use tracing::info;

use crate::{
    claim::Claim,
    error::{Rejection, Result, StoreError},
    filter::Filter,
    Store,
};

/// How many failures `retry --all` publishes before waiting for their confirms.
const BATCH: u32 = 200;

/// Retries failures through one broker channel (in confirm mode).
pub struct Requeuer<'a> {
    store: &'a Store,
    channel: Channel,
    declared: HashSet<String>,
    actor: String,
    queue_type: palermo::QueueType,
    priorities: palermo::Priorities,
}

impl<'a> Requeuer<'a> {
    /// Opens a confirm channel on `connection`; `actor` is recorded with each retry. A job
    /// queue that no longer exists is declared as `deployment` declares it (its queue type
    /// and priority queues).
    pub async fn new(
        store: &'a Store,
        connection: &lapin::Connection,
        actor: impl Into<String>,
        deployment: &palermo::Deployment,
    ) -> Result<Requeuer<'a>> {
        let channel = broker::confirm_channel(connection).await?;
        topology::declare_exchange(&channel).await?;
        Ok(Requeuer {
            store,
            channel,
            declared: HashSet::new(),
            actor: actor.into(),
            queue_type: deployment.queue_type,
            priorities: deployment.priorities.clone(),
        })
    }

    /// Retries these failures, all or none: if any id is unknown, already retried or removed
    /// (another admin was first: the error names who), or has no queue to go back to, nothing
    /// is published and the error lists them. Returns the ids retried.
    pub async fn retry(&mut self, ids: &[String]) -> Result<Vec<String>> {
        let mut claim = self.store.claim("retried").await?;
        let (taken, mut rejections) = claim.take_all(ids).await?;
        let mut jobs = Vec::new();
        for id in taken {
            match claim.payload(&id).await? {
                Some((queue, _, _)) if topology::validate_queue_name(&queue).is_err() => {
                    rejections.push(Rejection {
                        id,
                        reason: format!("its original queue {queue:?} is unknown or invalid, so it cannot be retried (remove it instead)"),
                    })
                }
                Some((queue, body, properties)) => jobs.push((id, queue, body, properties)),
                None => rejections.push(Rejection {
                    id,
                    reason: "no failure has this id".into(),
                }),
            }
        }
        if !rejections.is_empty() {
            return Err(StoreError::Rejected(rejections));
        }
        self.publish_and_mark(claim, jobs).await
    }

    /// Retries every open failure matching `filter`; returns how many. Failures another
    /// admin retries or removes meanwhile are left to them.
    pub async fn retry_matching(&mut self, filter: &Filter) -> Result<u64> {
        let mut retried = 0;
        let mut skipped: HashSet<String> = HashSet::new();
        loop {
            let ids = self
                .store
                .failure_ids(filter, BATCH + skipped.len() as u32)
                .await?;
            let ids: Vec<String> = ids.into_iter().filter(|id| !skipped.contains(id)).collect();
            if ids.is_empty() {
                return Ok(retried);
            }
            let mut claim = self.store.claim("retried").await?;
            let (taken, _) = claim.take_all(&ids).await?;
            let mut jobs = Vec::new();
            for id in taken {
                match claim.payload(&id).await? {
                    Some((queue, body, properties))
                        if topology::validate_queue_name(&queue).is_ok() =>
                    {
                        jobs.push((id, queue, body, properties))
                    }
                    _ => {
                        tracing::warn!(failure.id = %id, "skipping a failure without a valid original queue");
                        claim.give_back(&id).await?;
                        skipped.insert(id);
                    }
                }
            }
            retried += self.publish_and_mark(claim, jobs).await?.len() as u64;
        }
    }

    /// Publishes every job of `claim` (pipelined), waits for each confirm, records each
    /// confirmed one as retried and gives the others back, then commits. Stops at the first
    /// publish that cannot be sent (the claim then rolls back: those jobs stay listed).
    async fn publish_and_mark(
        &mut self,
        mut claim: Claim,
        jobs: Vec<(String, String, Vec<u8>, String)>,
    ) -> Result<Vec<String>> {
        let mut pending = Vec::new();
        for (id, queue, body, properties) in jobs {
            if !self.declared.contains(&queue) {
                let max_priority = self.priorities.of(&queue);
                topology::declare_job_queue(&self.channel, &queue, self.queue_type, max_priority)
                    .await?;
                self.declared.insert(queue.clone());
            }
            let properties = republished(&properties, &id);
            let confirm = broker::publish(&self.channel, &queue, &body, properties).await?;
            pending.push((id, queue, confirm));
        }
        // Every confirm is awaited even after one fails, so that each job the broker did
        // store is marked retried and no confirmed job stays listed.
        let mut confirmed = Vec::new();
        let mut first_error = None;
        for (id, queue, confirm) in pending {
            match confirm.confirmed().await {
                Ok(()) => {
                    claim.record(&id, Some(&queue), &self.actor).await?;
                    confirmed.push((id, queue));
                }
                Err(e) => {
                    claim.give_back(&id).await?;
                    first_error.get_or_insert(StoreError::from(e));
                }
            }
        }
        claim.commit().await?;
        for (id, queue) in &confirmed {
            info!(failure.id = %id, %queue, "failed job retried");
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(confirmed.into_iter().map(|(id, _)| id).collect()),
        }
    }
}

/// The properties of a retried job: the recorded ones as [`wire::republish::requeued`]
/// makes them (no failure and retry headers, attempt 1). Properties that cannot be read back
/// (a store written by hand) become the minimum that lets the message route.
fn republished(recorded: &str, failure_id: &str) -> BasicProperties {
    let original: BasicProperties = match serde_json::from_str(recorded) {
        Ok(properties) => properties,
        Err(e) => {
            tracing::warn!(failure.id = %failure_id, error = %e, "the recorded AMQP properties do not parse; retrying with none");
            BasicProperties::default()
        }
    };
    wire::republish::requeued(&original)
}

//! The recorder's part of batches (docs/workflows.md, "Batches"): apply a batch event or a
//! batch member's failure to the store, then publish the callbacks this recorder won
//! (`crate::batches` says how exactly one recorder wins each).

use lapin::message::Delivery;
use palermo::admin::wire::{
    self,
    batch::{self, Event},
};
use tracing::{info, warn};

use super::Recorder;
use crate::{batches, error::Result, time};

impl Recorder {
    /// Applies one message of the batches queue; an unreadable one is logged and dropped.
    pub(super) async fn record_batch_event(&self, delivery: &Delivery) -> Result<()> {
        let event = match Event::parse(&delivery.data) {
            Ok(event) => event,
            Err(reason) => {
                warn!(%reason, "dropping an unreadable batch event");
                return Ok(());
            }
        };
        let now = time::now_ms();
        let batch = match event {
            Event::Opened(opened) => {
                self.store.batch_opened(&opened, now).await?;
                opened.batch
            }
            Event::MemberDone(done) => {
                let state = if done.outcome == "succeeded" {
                    batches::SUCCEEDED
                } else {
                    batches::FAILED
                };
                let member = done.member.to_string();
                self.store
                    .batch_member_done(done.batch, &member, state, done.at)
                    .await?;
                done.batch
            }
        };
        self.fire_due(&batch.to_string()).await
    }

    /// A message of the failed queue that is a batch member: the member failed for good.
    pub(super) async fn record_batch_failure(&self, delivery: &Delivery) -> Result<()> {
        let headers = wire::headers(&delivery.properties);
        let Some(batch) = batch::batch_of(headers) else {
            return Ok(());
        };
        let Some(member) = delivery.properties.message_id().as_ref() else {
            return Ok(());
        };
        let now = time::now_ms();
        self.store
            .batch_member_done(batch, member.as_str(), batches::FAILED, now)
            .await?;
        self.fire_due(&batch.to_string()).await
    }

    /// Publishes the callbacks of `batch` this recorder claims now, and marks them fired. A
    /// publish that fails stays claimed; the upkeep publishes it again after the lease.
    pub(super) async fn fire_due(&self, batch: &str) -> Result<()> {
        let now = time::now_ms();
        let lease = i64::try_from(self.config.batch_firing_lease.as_millis()).unwrap_or(i64::MAX);
        let due = self
            .store
            .batch_due(batch, now, now.saturating_sub(lease))
            .await?;
        for firing in due {
            let lock = batches::CALLBACK_LOCK;
            let fired = self
                .client
                .fire_batch_callback(firing.kind, &firing.callback, &firing.outcome, lock)
                .await;
            match fired {
                Ok(first) => {
                    self.crash_after_publish();
                    self.store.batch_fired(batch, firing.kind, now).await?;
                    info!(batch, callback = firing.kind, job.id = %firing.callback.id, again = !first, "batch callback fired");
                }
                Err(e) => {
                    warn!(batch, callback = firing.kind, error = %e, "could not publish a batch callback; trying again after the lease")
                }
            }
        }
        Ok(())
    }
}

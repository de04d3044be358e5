//! A batch member's end (docs/workflows.md, "Batches"): a member that succeeded is reported
//! to the batches queue, confirmed, before its ack. A crash in between runs it again and
//! reports it again; the recorder counts a member once. A member that fails for good is
//! reported by its failure record (the failed queue keeps its headers), so nothing is added
//! to the failure path. A job without the batch header pays one header lookup.

use lapin::{message::Delivery, Channel};

use super::Shared;
use crate::{
    error::Error,
    wire::{
        self,
        batch::{self, Event, MemberDone},
    },
};

/// Reports `delivery`'s success to its batch, if it is a member; `Ok` when it can be acked.
pub(crate) async fn succeeded(
    shared: &Shared,
    channel: &Channel,
    delivery: &Delivery,
) -> Result<(), Error> {
    let headers = wire::headers(&delivery.properties);
    let Some(batch) = batch::batch_of(headers) else {
        return Ok(());
    };
    let Some(member) = delivery
        .properties
        .message_id()
        .as_ref()
        .and_then(|id| uuid::Uuid::parse_str(id.as_str()).ok())
    else {
        return Ok(());
    };
    let event = Event::MemberDone(MemberDone {
        version: batch::EVENT_VERSION,
        batch,
        member,
        outcome: "succeeded".into(),
        at: wire::now_ms(),
    });
    let (body, properties) = event.message();
    let deployment = &shared.config.deployment;
    let queue = deployment.batches_queue();
    super::heal::publish_declaring(channel, &queue, deployment, &body, properties).await
}

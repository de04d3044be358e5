//! Carrying a chain on: when a chain step succeeded, the worker publishes the next step
//! (built from the step's `x-palermo-chain` header, `wire/chain.rs`) and waits for the
//! broker's confirm BEFORE it acks the step, as a retry is published before its ack
//! (`retrying.rs`). A publish that cannot be confirmed leaves the step unacked: the broker
//! runs it again, so a chain never stops silently between two steps.
//!
//! The price is at-least-once, as for every job: a worker that dies after the confirm and
//! before the ack runs the step again elsewhere, and that run publishes the next step a
//! second time, under the same fixed job id (docs/workflows.md says what follows).

use lapin::Channel;
use tracing::{debug, warn};

use super::{heal, Shared};
use crate::{
    broker::delay::{self, Kind},
    error::Error,
    wire::{
        chain::{ChainHeader, Due, NextStep},
        JobMeta,
    },
};

/// Publishes the step after `meta`'s in `chain`, confirmed; `Ok` at once after the last
/// step. `Err` when it cannot be built (a header that reads but whose next step does not:
/// then the step goes to the failed queue with that reason) or published (the step is not
/// acked and runs again).
pub(crate) async fn publish_next(
    shared: &Shared,
    channel: &Channel,
    meta: &JobMeta,
    chain: &ChainHeader,
) -> Result<(), Error> {
    let next = match chain.next_step() {
        Ok(Some(next)) => next,
        Ok(None) => {
            debug!(chain.id = %chain.id, job.id = %meta.id, "the chain's last step succeeded");
            return Ok(());
        }
        // Not reached: the header was read whole before the step ran (`ChainHeader::read`
        // checks every later step), and a step that does not read never runs.
        Err(e) => return Err(Error::Config(e.0)),
    };
    let NextStep {
        meta: step,
        body,
        properties,
        due,
    } = next;
    let delay = match due {
        None => None,
        Some(Due::After(delay)) => Some(delay),
        Some(Due::At(at)) => Some(delay::until(at)).filter(|d| !d.is_zero()),
    };
    let published = match delay {
        None => {
            let deployment = &shared.config.deployment;
            heal::publish_declaring(channel, &step.queue, deployment, &body, properties).await
        }
        Some(delay) => {
            let send = || async {
                (shared.delays)
                    .publish(
                        channel,
                        Kind::Scheduled,
                        delay,
                        &step.queue,
                        &body,
                        properties.clone(),
                    )
                    .await?
                    .confirmed()
                    .await
            };
            match send().await {
                Err(e) if e.is_missing_object() && channel.status().connected() => {
                    shared.delays.forget();
                    send().await
                }
                Err(e) => {
                    shared.delays.forget();
                    Err(e)
                }
                ok => ok,
            }
        }
    };
    match &published {
        Ok(()) => debug!(
            chain.id = %chain.id, job.id = %meta.id, next.id = %step.id, next.name = %step.name,
            queue = %step.queue, step = chain.step + 1, steps = chain.steps, "published the chain's next step"
        ),
        Err(e) => warn!(
            chain.id = %chain.id, job.id = %meta.id, next.name = %step.name, queue = %step.queue,
            error = %e, "cannot publish the chain's next step; the step runs again"
        ),
    }
    published
}

//! Poison messages: a job that kills its worker (abort, stack overflow, out of memory) is
//! redelivered by the broker to the next worker, which dies too, forever.
//!
//! Quorum queues count deliveries themselves (`x-delivery-count`). Classic queues only set
//! `redelivered`, so before running a redelivered message the worker republishes it to its
//! queue with `x-palermo-redeliveries` one higher (confirmed), acks the original, and runs
//! the copy when it comes round (at the back of the queue). Once a message has come back
//! [`crate::WorkerConfig::max_redeliveries`] times without any worker finishing it, it goes
//! to the failed queue with kind `poison` instead of running again.
//!
//! Every way a run can end without an ack counts: the worker died, lost its connection, or
//! handed the job back during a shutdown.

use lapin::{message::Delivery, Channel};
use tracing::{error, warn};

use super::{
    failure::{self, Failure, FailureKind, GaveUp},
    Shared,
};
use crate::{
    broker::delay,
    error::Error,
    wire::{self, header},
};

/// The header in which quorum queues count a message's deliveries.
const QUORUM_COUNT: &str = "x-delivery-count";

/// What the guard did with a delivery.
pub(crate) enum Verdict {
    /// Run it now.
    Run,
    /// It was republished or failed; settle the original with this result (ack on `Ok`).
    Handled(Result<(), Error>),
}

/// How many times `delivery` came back without a run finishing (0 on a first delivery).
pub(crate) fn redeliveries(delivery: &Delivery) -> i64 {
    counted(delivery).0
}

/// [`redeliveries`], and whether a quorum queue counted them.
fn counted(delivery: &Delivery) -> (i64, bool) {
    let headers = wire::headers(&delivery.properties);
    let [quorum_count, redeliveries] = wire::find(headers, [QUORUM_COUNT, header::REDELIVERIES]);
    // Quorum queues count every return of the message themselves.
    // (A header of another type is a quorum queue's too, though not a count to read.)
    let quorum = match wire::int_value(QUORUM_COUNT, quorum_count) {
        Ok(Some(count)) => return (count, true),
        Ok(None) => false,
        Err(_) => true,
    };
    let previous = wire::int_value(header::REDELIVERIES, redeliveries)
        .ok()
        .flatten()
        .unwrap_or(0);
    (previous + i64::from(delivery.redelivered), quorum)
}

/// Decides whether `delivery` may run.
pub(crate) async fn check(shared: &Shared, channel: &Channel, delivery: &Delivery) -> Verdict {
    let (count, quorum) = counted(delivery);
    let limit = i64::from(shared.config.max_redeliveries);
    if count >= limit {
        let reason = format!(
            "poison message: delivered {} times without any run finishing (the job may abort, overflow its stack or run out of memory, killing its worker; or it ran past RabbitMQ's consumer_timeout); max_redeliveries is {limit}",
            count + 1
        );
        error!(queue = %delivery.routing_key, redeliveries = count, "{reason}");
        let failure = Failure::new(FailureKind::Poison, reason);
        let result = failure::publish(
            shared,
            channel,
            delivery,
            &failure,
            GaveUp::NotRetryable,
            None,
        )
        .await;
        return Verdict::Handled(result);
    }
    if !delivery.redelivered || quorum {
        return Verdict::Run;
    }
    warn!(
        queue = %delivery.routing_key, redeliveries = count, limit,
        "redelivered job (a worker died or lost its connection while running it); counting it and running it again"
    );
    let mut headers = wire::headers(&delivery.properties).clone();
    wire::put_int(&mut headers, header::REDELIVERIES, count);
    let routing_key = delivery.routing_key.as_str();
    let queue = delay::destination(routing_key).unwrap_or(routing_key);
    let properties = wire::republish::republished(&delivery.properties, headers);
    let deployment = &shared.config.deployment;
    let republished = crate::worker::heal::publish_declaring(
        channel,
        queue,
        deployment,
        &delivery.data,
        properties,
    );
    Verdict::Handled(republished.await)
}

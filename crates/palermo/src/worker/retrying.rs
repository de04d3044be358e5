//! Running a job again later: a retry after a failed attempt (the next attempt number, the
//! failure recorded in its headers) or a snooze (the same attempt; not a failure), both
//! published through the [`crate::broker::delay`] queues.
//!
//! The worker never holds a delivery to wait: the job goes back to the broker, delayed, and
//! the caller acks the original only once that publish is confirmed. A crash in between runs
//! the job once more (at-least-once), it never loses it.

use std::time::Duration;

use lapin::{message::Delivery, types::FieldTable, Channel};
use tracing::warn;

use super::{
    decide::NextAttempt,
    failure::{self, Failure},
    Shared,
};
use crate::{
    broker::delay::{self, Kind},
    error::Error,
    wire::{self, header, republish, JobMeta},
};

/// Publishes the retry of `delivery` as `next`, with `failure` recorded; waits for the
/// confirm.
pub(crate) async fn retry(
    shared: &Shared,
    channel: &Channel,
    delivery: &Delivery,
    meta: &JobMeta,
    failure: &Failure,
    next: NextAttempt,
) -> Result<(), Error> {
    let mut headers = failure::failure_headers(shared, delivery, failure, meta.attempt, |_| {});
    wire::put_int(&mut headers, header::ATTEMPT, next.attempt.into());
    wire::put_int(&mut headers, header::MAX_ATTEMPTS, next.max_attempts.into());
    publish(
        shared,
        channel,
        delivery,
        meta,
        Kind::Retry,
        next.delay,
        headers,
    )
    .await
}

/// Publishes `delivery` to run again after `delay` with the same attempt number, counting the
/// snooze in `x-palermo-snoozes` and naming the limit it waits for, if any, in
/// `x-palermo-waiting-for`; waits for the confirm. Delays beyond [`delay::MAX_DELAY`] are
/// shortened to it.
pub(crate) async fn snooze(
    shared: &Shared,
    channel: &Channel,
    delivery: &Delivery,
    meta: &JobMeta,
    delay: Duration,
    waiting_for: Option<&str>,
) -> Result<(), Error> {
    let delay = if delay > delay::MAX_DELAY {
        warn!(
            job.id = %meta.id, job.name = %meta.name, requested = ?delay, max = ?delay::MAX_DELAY,
            "snooze longer than the delay queues hold; shortened"
        );
        delay::MAX_DELAY
    } else {
        delay
    };
    let mut headers =
        republish::without(wire::headers(&delivery.properties), &[header::WAITING_FOR]);
    if let Some(limit) = waiting_for {
        let limit = lapin::types::AMQPValue::LongString(limit.into());
        headers.insert(header::WAITING_FOR.into(), limit);
    }
    let snoozes = wire::get_int(&headers, header::SNOOZES)
        .ok()
        .flatten()
        .unwrap_or(0);
    wire::put_int(&mut headers, header::SNOOZES, snoozes.saturating_add(1));
    publish(
        shared,
        channel,
        delivery,
        meta,
        Kind::Scheduled,
        delay,
        headers,
    )
    .await
}

async fn publish(
    shared: &Shared,
    channel: &Channel,
    delivery: &Delivery,
    meta: &JobMeta,
    kind: Kind,
    delay: Duration,
    mut headers: FieldTable,
) -> Result<(), Error> {
    let secs = delay::whole_seconds(delay).ok_or(Error::DelayTooLong {
        requested: delay,
        max: delay::MAX_DELAY,
    })?;
    let due = wire::now_ms().saturating_add(i64::try_from(secs * 1000).unwrap_or(i64::MAX));
    wire::put_int(&mut headers, header::NEXT_RUN_AT, due);
    let properties = republish::republished(&delivery.properties, headers);
    let (delays, queue, body) = (&shared.delays, &meta.queue, &delivery.data);
    let publish = || async {
        (delays)
            .publish(channel, kind, delay, queue, body, properties.clone())
            .await?
            .confirmed()
            .await
    };
    match publish().await {
        // A delay queue, or the job's queue, was deleted: declare the layout and the queue
        // again on this channel and try once more (heal.rs).
        Err(e) if e.is_missing_object() && channel.status().connected() => {
            warn!(job.id = %meta.id, queue = %meta.queue, error = %e, "a delay queue or the job's queue is missing; declaring them again");
            delays.forget();
            publish().await
        }
        Err(e) => {
            // A closed channel (404 from a deleted delay exchange): the next channel declares the layout again.
            delays.forget();
            Err(e)
        }
        ok => ok,
    }
}

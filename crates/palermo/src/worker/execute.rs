//! Executing one delivery: parse, look up, decode, run with a timeout and a panic guard,
//! then ack, or publish the failure and ack only once it is confirmed.

use std::time::Instant;

use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicNackOptions},
    Channel,
};
use tracing::{error, info, warn};

use super::{
    failure::{self, Failure, FailureKind},
    panic, Shared,
};
use crate::{job::JobContext, wire::JobMeta};

/// Runs one delivery to its end: acked, or handed to the failed queue and then acked, or,
/// when that hand-over cannot be confirmed, returned to the broker unacked.
pub(crate) async fn execute(shared: &Shared, channel: &Channel, delivery: Delivery) {
    let outcome = run(shared, &delivery).await;
    let failure = match outcome {
        Ok(()) => {
            ack(&delivery).await;
            return;
        }
        Err(failure) => failure,
    };
    match failure::publish(shared, channel, &delivery, &failure).await {
        Ok(()) => ack(&delivery).await,
        Err(e) => {
            error!(
                error = %e,
                queue = %delivery.routing_key,
                "could not hand a failed job to the failed queue; returning it to its queue"
            );
            let requeue = BasicNackOptions {
                requeue: true,
                ..Default::default()
            };
            if let Err(e) = delivery.nack(requeue).await {
                warn!(error = %e, "nack failed; the broker redelivers the job when the channel closes");
            }
        }
    }
}

async fn ack(delivery: &Delivery) {
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        // The channel is gone: the broker redelivers the message (at-least-once).
        warn!(error = %e, queue = %delivery.routing_key, "ack failed; the job will be redelivered");
    }
}

/// Runs the job in `delivery`; `Err` says why it failed.
async fn run(shared: &Shared, delivery: &Delivery) -> Result<(), Failure> {
    let meta = JobMeta::parse(&delivery.properties).map_err(|reason| {
        warn!(queue = %delivery.routing_key, %reason, "malformed message; moving it to the failed queue");
        Failure::new(FailureKind::Malformed, reason)
    })?;
    let Some(registration) = shared.registry.get(&meta.name) else {
        warn!(job.id = %meta.id, job.name = %meta.name, "no job of that name in this worker");
        return Err(Failure::new(
            FailureKind::UnknownJob,
            format!(
                "unknown job {:?}: this worker runs {:?}",
                meta.name,
                shared.registry.names()
            ),
        ));
    };
    let ctx = JobContext {
        id: meta.id,
        name: registration.name.into(),
        queue: meta.queue.as_str().into(),
        attempt: meta.attempt,
        max_attempts: meta.max_attempts.or(registration.max_attempts).unwrap_or(1),
        state: shared.state.clone(),
    };
    let job = (registration.decode)(meta.format, &delivery.data, ctx).map_err(|reason| {
        warn!(job.id = %meta.id, job.name = %meta.name, %reason, "cannot decode the job's arguments");
        Failure::new(
            FailureKind::Undecodable,
            format!("cannot decode the arguments of {:?} as {}: {reason}", meta.name, meta.format),
        )
    })?;

    let timeout = registration.timeout.unwrap_or(shared.config.job_timeout);
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, panic::catch(job)).await;
    let elapsed = started.elapsed();
    let failure = match result {
        Ok(Ok(Ok(()))) => {
            info!(job.id = %meta.id, job.name = %meta.name, queue = %meta.queue, attempt = meta.attempt, ?elapsed, "job done");
            return Ok(());
        }
        Ok(Ok(Err(job_error))) => {
            let error = job_error.error();
            let backtrace = match error.backtrace().status() {
                std::backtrace::BacktraceStatus::Captured => Some(error.backtrace().to_string()),
                _ => None,
            };
            Failure {
                kind: FailureKind::Error,
                message: format!("{error:#}"),
                backtrace,
            }
        }
        Ok(Err(panicked)) => Failure {
            kind: FailureKind::Panic,
            message: format!("panicked: {}", panicked.message),
            backtrace: panicked.backtrace,
        },
        Err(_) => Failure::new(FailureKind::Timeout, format!("timed out after {timeout:?}")),
    };
    warn!(
        job.id = %meta.id, job.name = %meta.name, queue = %meta.queue, attempt = meta.attempt,
        kind = failure.kind.as_str(), error = %failure.message, ?elapsed, "job failed"
    );
    Err(failure)
}

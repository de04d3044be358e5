//! Executing one delivery: parse it, check that it can run here, run it and decide what
//! follows (`decide.rs`, the one place that decides), then carry the decision out on the
//! broker:
//!
//! - success → ack; a chain step's success first publishes the chain's next step
//!   (`chain.rs`);
//! - a snooze → publish it again, delayed, same attempt → ack;
//! - a retry → publish it, delayed by its backoff, as the next attempt → ack;
//! - failed for good, or a message that cannot run at all → publish it to the failed queue
//!   → ack;
//! - cancelled by an operator (before it started, or while it ran) → ack (`cancel.rs`).
//!
//! Every publish is confirmed before the ack; when it cannot be, the delivery goes back to
//! the broker unacked, so nothing is lost.

use std::sync::Arc;

use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicNackOptions},
    Channel,
};
use tracing::{debug, info, warn};

use super::{
    decide::{self, Decision, Ran, Retries},
    failure::{self, Failure, FailureKind, GaveUp},
    limit_gate::{self as gate, Acquired, Opener, Permit},
    poison, recent, retrying,
    stats::SlotStats,
    Shared,
};
use crate::{
    error::Error,
    job::CancelSignal,
    limits::Limit,
    registry::{Names, Registration},
    wire::{self, chain::ChainHeader, JobMeta},
};

/// Runs one delivery to its end: acked, or handed over (retry, snooze, failed queue) and then
/// acked, or, when that hand-over cannot be confirmed, returned to the broker unacked.
/// `slot` is the slot's share of the stats.
pub(crate) async fn execute(
    shared: &Shared,
    channel: &Channel,
    delivery: &Delivery,
    slot: &mut SlotStats,
    limits: &mut Opener,
) {
    if let poison::Verdict::Handled(result) = poison::check(shared, channel, delivery).await {
        settle(shared, channel, delivery, result).await;
        return;
    }
    // Parsed once here; the stats and the run share it, and its names.
    let meta = JobMeta::parse(&delivery.properties);
    // In flight with its signal before the cancelled ids are checked (`cancel.rs`).
    let cancel = Arc::new(CancelSignal::default());
    let (running, names) = slot.started(&shared.stats, delivery, meta.as_ref().ok(), &cancel);
    // `done`: the job's work is over and its unique key (if any) free once acked.
    // `took`: how long the job's function ran, for the duration histogram.
    let (succeeded, done, handed_over, took) = match admit(shared, delivery, meta) {
        Admission::AlreadyRan => (true, true, Ok(()), None),
        Admission::Rejected(failure) => {
            let gave_up = GaveUp::NotRetryable;
            let published = failure::publish(shared, channel, delivery, &failure, gave_up, None);
            (false, false, published.await, None)
        }
        Admission::Run {
            meta,
            registration,
            run_key,
            chain,
        } => {
            if let Some((by, at)) = shared.cancels.check(&meta.id) {
                cancel.raise(&by, at);
            }
            // A limited job first takes its permit, or waits (docs/limits.md); an unlimited
            // one pays one empty-map check.
            let permit = match shared.limits.of(&meta.name) {
                None => None,
                // A cancelled job takes no permit: it does not run.
                Some(_) if cancel.is_raised() => None,
                Some(limit) => match take_permit(shared, limits, limit, &meta, delivery).await {
                    Ok(permit) => Some(permit),
                    Err(waiting_for) => {
                        let (delay, waiting_for) =
                            (crate::limits::WAIT, Some(waiting_for.as_str()));
                        let waited =
                            retrying::snooze(shared, channel, delivery, &meta, delay, waiting_for);
                        let handed_over = waited.await;
                        settle(shared, channel, delivery, handed_over).await;
                        // Not a run: dropped uncounted, it only leaves the in-flight list.
                        drop(running);
                        return;
                    }
                },
            };
            let job = decide::Job {
                meta: &meta,
                registration,
                body: &delivery.data,
                headers: Some(wire::headers(&delivery.properties)),
                names: names.unwrap_or_else(|| Names::of(&meta)),
                state: shared.state.clone(),
                cancel,
            };
            let ran = decide::run(job, &Retries::of(&shared.config), &shared.middleware).await;
            if let Some(permit) = permit {
                gate::release(&shared.limits, limits, permit).await;
            }
            let done = matches!(
                ran.decision,
                Decision::Succeeded | Decision::Cancelled { .. }
            );
            let ran_through = matches!(ran.decision, Decision::Succeeded);
            let succeeded = ran.decision.is_ok();
            let took = ran.elapsed;
            let handed_over = carry_out(shared, channel, delivery, &meta, chain.as_ref(), ran);
            let handed_over = handed_over.await;
            // Remembered once what follows it is confirmed: a redelivery of a chain step
            // whose next step was not published must run again, not be acked unrun.
            if ran_through && handed_over.is_ok() {
                shared.recent.insert(run_key);
            }
            (succeeded, done, handed_over, Some(took))
        }
    };
    // A batch member that succeeded is reported before its ack (worker/batch.rs).
    let handed_over = match handed_over {
        Ok(()) if done => super::batch::succeeded(shared, channel, delivery).await,
        other => other,
    };
    let acked = handed_over.is_ok();
    settle(shared, channel, delivery, handed_over).await;
    if done && acked {
        crate::unique::release_after(channel, &delivery.properties).await;
    }
    // Counted once the ack is on its way: the counters are for heartbeats, the ack is what
    // lets the broker send the slot its next job.
    running.finished(succeeded, took);
}

/// Acks `delivery` once whatever replaces it is confirmed (`Ok`); otherwise returns it to
/// its queue unacked, so nothing is lost, after a pause that grows while the fault lasts
/// (heal.rs), so that it is not redelivered in a tight loop.
async fn settle(
    shared: &Shared,
    channel: &Channel,
    delivery: &Delivery,
    handed_over: Result<(), Error>,
) {
    match handed_over {
        Ok(()) => {
            shared.mender.succeeded();
            ack(delivery).await
        }
        Err(e) => {
            let hold = shared.mender.failed(delivery.routing_key.as_str(), &e);
            // On a closed channel the broker already has the job back: nothing to hold.
            if channel.status().connected() {
                tokio::time::sleep(hold).await;
            }
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

/// Carries out `ran`'s decision on the broker: publishes a chain's next step, the snooze,
/// the retry or the failure (logged once, here), confirmed. `Ok` when the delivery can be
/// acked.
async fn carry_out(
    shared: &Shared,
    channel: &Channel,
    delivery: &Delivery,
    meta: &JobMeta,
    chain: Option<&ChainHeader>,
    ran: Ran,
) -> Result<(), Error> {
    let (failure, gave_up, max) = match ran.decision {
        Decision::Succeeded => match chain {
            None => return Ok(()),
            Some(chain) => return super::chain::publish_next(shared, channel, meta, chain).await,
        },
        Decision::Cancelled { by, at, ran: true } => {
            info!(job.id = %meta.id, job.name = %meta.name, queue = %meta.queue, attempt = meta.attempt, cancelled_by = %by, cancelled_at = at, elapsed = ?ran.elapsed, "running job cancelled; acking it");
            return Ok(());
        }
        Decision::Cancelled { by, at, ran: false } => {
            info!(job.id = %meta.id, job.name = %meta.name, queue = %meta.queue, attempt = meta.attempt, cancelled_by = %by, cancelled_at = at, "cancelled job not run; acking it");
            return Ok(());
        }
        Decision::Snooze { delay } => {
            info!(job.id = %meta.id, job.name = %meta.name, queue = %meta.queue, attempt = meta.attempt, ?delay, "job snoozed");
            return retrying::snooze(shared, channel, delivery, meta, delay, None).await;
        }
        Decision::Retry { failure, next } => {
            warn!(
                job.id = %meta.id, job.name = %meta.name, queue = %meta.queue, attempt = meta.attempt,
                max_attempts = next.max_attempts, kind = failure.kind.as_str(), error = %failure.message,
                elapsed = ?ran.elapsed, retry_in = ?next.delay, "job failed; retrying"
            );
            match retrying::retry(shared, channel, delivery, meta, &failure, next).await {
                // The retry cannot be published at all (its queue name is invalid...): keep
                // the job in the failed queue rather than requeue it forever.
                Err(e) if e.is_permanent() => {
                    warn!(job.id = %meta.id, error = %e, "cannot retry the job; moving it to the failed queue");
                    (failure, GaveUp::NotRetryable, Some(next.max_attempts))
                }
                other => return other,
            }
        }
        Decision::Fail {
            failure,
            gave_up,
            max_attempts,
        } => {
            warn!(
                job.id = %meta.id, job.name = %meta.name, queue = %meta.queue, attempt = meta.attempt,
                max_attempts, kind = failure.kind.as_str(), error = %failure.message,
                elapsed = ?ran.elapsed, gave_up = gave_up.as_str(), "job failed; moving it to the failed queue"
            );
            (failure, gave_up, max_attempts)
        }
    };
    failure::publish(shared, channel, delivery, &failure, gave_up, max).await
}

/// Takes the permit `limit` requires to run `meta`'s job now; `Err` names the limit it must
/// wait for (reached, or the broker could not say: it waits rather than overrun).
async fn take_permit(
    shared: &Shared,
    limits: &mut Opener,
    limit: &Limit,
    meta: &JobMeta,
    delivery: &Delivery,
) -> Result<Permit, String> {
    let acquired = gate::acquire(&shared.limits, limits, limit, meta, &delivery.data);
    match acquired.await {
        Ok(Acquired::Run(permit)) => Ok(permit),
        Ok(Acquired::Wait(name, _)) => {
            debug!(job.id = %meta.id, job.name = %meta.name, limit = %name, "limit reached; the job waits");
            Err(name)
        }
        Err(e) => {
            let name = limit.name_for(&meta.name).to_string();
            warn!(job.id = %meta.id, job.name = %meta.name, limit = %name, error = %e, "cannot take the job's limit; it waits");
            Err(name)
        }
    }
}

async fn ack(delivery: &Delivery) {
    // On `Ok(false)` or an error the channel is gone: the broker redelivers the message
    // (at-least-once).
    match delivery.ack(BasicAckOptions::default()).await {
        Ok(true) => {}
        Ok(false) => warn!(
            job.id = ?delivery.properties.message_id(), queue = %delivery.routing_key,
            "the job's channel closed before its ack; the broker will run it again"
        ),
        Err(e) => {
            warn!(error = %e, queue = %delivery.routing_key, "ack failed; the job will be redelivered")
        }
    }
}

/// Whether a delivery runs, or how it ends without running.
enum Admission {
    /// It passed every check.
    Run {
        meta: JobMeta,
        registration: &'static Registration,
        run_key: recent::RunKey,
        /// The chain it is a step of, if any.
        chain: Option<ChainHeader>,
    },
    /// A redelivery of a run that already succeeded here: ack it, do not run it again.
    AlreadyRan,
    /// It cannot run at all: to the failed queue.
    Rejected(Failure),
}

/// Checks that `delivery` can run here: its metadata reads, it is not a run this worker
/// already finished, and its job is linked in. Its arguments are decoded by the run.
fn admit(
    shared: &Shared,
    delivery: &Delivery,
    meta: Result<JobMeta, wire::Malformed>,
) -> Admission {
    let meta = match meta {
        Ok(meta) => meta,
        Err(reason) => {
            warn!(queue = %delivery.routing_key, %reason, "malformed message; moving it to the failed queue");
            return Admission::Rejected(Failure::new(FailureKind::Malformed, reason.0));
        }
    };
    let headers = wire::headers(&delivery.properties);
    // Read before the run: a step whose chain cannot go on after it does not run.
    let chain = match ChainHeader::read(headers) {
        Ok(chain) => chain,
        Err(reason) => {
            warn!(job.id = %meta.id, job.name = %meta.name, %reason, "malformed chain header; moving the job to the failed queue");
            return Admission::Rejected(Failure::new(FailureKind::Malformed, reason.0));
        }
    };
    let run_key = recent::RunKey::of(&meta, headers);
    if shared.recent.contains(&run_key) {
        // A chain step published twice (a crash between the next step's publish and the
        // ack of the one before): this worker ran it and published what follows it.
        if let Some(chain) = &chain {
            info!(job.id = %meta.id, job.name = %meta.name, chain.id = %chain.id, step = chain.step, "chain step already ran here; acking the duplicate without running it");
            return Admission::AlreadyRan;
        }
        if poison::redeliveries(delivery) > 0 {
            info!(job.id = %meta.id, job.name = %meta.name, attempt = meta.attempt, "redelivered job already ran here (its ack was lost); acking it without running it again");
            return Admission::AlreadyRan;
        }
        warn!(job.id = %meta.id, job.name = %meta.name, "duplicate job id; moving it to the failed queue");
        return Admission::Rejected(Failure::new(
            FailureKind::Duplicate,
            format!(
                "duplicate job id {}: attempt {} of it already ran on this worker; a publisher sent the same job id twice",
                meta.id, meta.attempt
            ),
        ));
    }
    let Some(registration) = shared.registry.get(&meta.name) else {
        warn!(job.id = %meta.id, job.name = %meta.name, "no job of that name in this worker; moving it to the failed queue");
        return Admission::Rejected(Failure::new(
            FailureKind::UnknownJob,
            format!(
                "unknown job {:?}: this worker runs {:?}",
                meta.name,
                shared.registry.names()
            ),
        ));
    };
    Admission::Run {
        meta,
        registration,
        run_key,
        chain,
    }
}

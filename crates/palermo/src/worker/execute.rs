//! Executing one delivery: parse, look up, decode, run with a timeout and a panic guard,
//! then settle it. This is where the outcome of a run is decided:
//!
//! - success → ack;
//! - [`crate::JobError::snooze`] → publish it again, delayed, same attempt → ack;
//! - error, panic or timeout with attempts left → publish the retry, delayed by the
//!   [`crate::retry`] backoff → ack;
//! - [`crate::JobError::fail_now`], the last attempt, or a message that cannot run at all →
//!   publish it to the failed queue → ack.
//!
//! Every publish is confirmed before the ack; when it cannot be, the delivery goes back to
//! the broker unacked, so nothing is lost.

use std::time::{Duration, Instant};

use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicNackOptions},
    Channel,
};
use tracing::{debug, info, warn};

use super::{
    failure::{self, Failure, FailureKind, GaveUp},
    panic, poison, recent,
    retrying::{self, NextAttempt},
    stats::SlotStats,
    Shared,
};
use crate::{
    error::Error,
    job::{ErrorKind, JobContext},
    middleware::{self, JobInfo},
    registry::{BoxedRun, Names, Registration},
    retry::{self, Backoff, Decision},
    trace,
    wire::{self, JobMeta},
};

/// How a run ended.
enum Outcome {
    Done,
    /// A redelivery of a run that already succeeded here: ack it, do not run it again.
    AlreadyRan,
    /// The job asked to run again after `delay`, without using an attempt.
    Snoozed {
        meta: JobMeta,
        delay: Duration,
    },
    /// The run failed; `ran` is `None` when the message could not be run at all.
    Failed {
        failure: Failure,
        ran: Option<Ran>,
    },
}

/// What is known about a job that ran and failed.
struct Ran {
    meta: JobMeta,
    max_attempts: u32,
    backoff: Backoff,
    fail_now: bool,
    elapsed: Duration,
}

impl Outcome {
    /// Whether the run did not fail (it succeeded or snoozed).
    fn is_ok(&self) -> bool {
        !matches!(self, Outcome::Failed { .. })
    }
}

/// Runs one delivery to its end: acked, or handed over (retry, snooze, failed queue) and then
/// acked, or, when that hand-over cannot be confirmed, returned to the broker unacked.
/// `slot` is the slot's share of the stats.
pub(crate) async fn execute(
    shared: &Shared,
    channel: &Channel,
    delivery: &Delivery,
    slot: &mut SlotStats,
) {
    if let poison::Verdict::Handled(result) = poison::check(shared, channel, delivery).await {
        settle(shared, channel, delivery, result).await;
        return;
    }
    // Parsed once here; the stats and the run share it, and its names.
    let meta = JobMeta::parse(&delivery.properties);
    let (running, names) = slot.started(&shared.stats, delivery, meta.as_ref().ok());
    let outcome = run(shared, delivery, meta, names).await;
    let succeeded = outcome.is_ok();
    let done = matches!(outcome, Outcome::Done | Outcome::AlreadyRan);
    let handed_over = match outcome {
        Outcome::Done | Outcome::AlreadyRan => Ok(()),
        Outcome::Snoozed { meta, delay } => {
            info!(job.id = %meta.id, job.name = %meta.name, queue = %meta.queue, attempt = meta.attempt, ?delay, "job snoozed");
            retrying::snooze(shared, channel, delivery, &meta, delay).await
        }
        Outcome::Failed { failure, ran } => {
            hand_over_failure(shared, channel, delivery, &failure, ran).await
        }
    };
    let acked = handed_over.is_ok();
    settle(shared, channel, delivery, handed_over).await;
    if done && acked {
        crate::unique::release_after(channel, &delivery.properties).await;
    }
    // Counted once the ack is on its way: the counters are for heartbeats, the ack is what
    // lets the broker send the slot its next job.
    running.finished(succeeded);
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

/// Publishes a failed job's retry, or the job to the failed queue; logs the failure once.
async fn hand_over_failure(
    shared: &Shared,
    channel: &Channel,
    delivery: &Delivery,
    failure: &Failure,
    ran: Option<Ran>,
) -> Result<(), Error> {
    let Some(ran) = ran else {
        return failure::publish(
            shared,
            channel,
            delivery,
            failure,
            GaveUp::NotRetryable,
            None,
        )
        .await;
    };
    let (meta, max) = (&ran.meta, ran.max_attempts);
    let (gave_up, decision) = if ran.fail_now {
        (GaveUp::FailNow, Decision::Exhausted)
    } else {
        let decision = retry::decide(meta.attempt, max, &ran.backoff);
        (GaveUp::AttemptsExhausted, decision)
    };
    let next = match decision {
        Decision::Retry {
            next_attempt,
            delay,
        } => NextAttempt {
            attempt: next_attempt,
            max_attempts: max,
            delay,
        },
        Decision::Exhausted => {
            warn!(
                job.id = %meta.id, job.name = %meta.name, queue = %meta.queue, attempt = meta.attempt,
                max_attempts = max, kind = failure.kind.as_str(), error = %failure.message,
                elapsed = ?ran.elapsed, gave_up = gave_up.as_str(), "job failed; moving it to the failed queue"
            );
            return failure::publish(shared, channel, delivery, failure, gave_up, Some(max)).await;
        }
    };
    warn!(
        job.id = %meta.id, job.name = %meta.name, queue = %meta.queue, attempt = meta.attempt,
        max_attempts = max, kind = failure.kind.as_str(), error = %failure.message,
        elapsed = ?ran.elapsed, retry_in = ?next.delay, "job failed; retrying"
    );
    match retrying::retry(shared, channel, delivery, meta, failure, next).await {
        // The retry cannot be published at all (its queue name is invalid...): keep the job
        // in the failed queue rather than requeue it forever.
        Err(e) if e.is_permanent() => {
            warn!(job.id = %meta.id, error = %e, "cannot retry the job; moving it to the failed queue");
            let gave_up = GaveUp::NotRetryable;
            failure::publish(shared, channel, delivery, failure, gave_up, Some(max)).await
        }
        other => other,
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

/// A delivery that passed every check and is ready to run.
struct Admitted {
    meta: JobMeta,
    registration: &'static Registration,
    job: BoxedRun,
    run_key: recent::RunKey,
    max_attempts: u32,
    ctx: JobContext,
}

/// Whether a delivery runs, or how it ended without running.
enum Admission {
    Run(Box<Admitted>),
    Settled(Box<Outcome>),
}

/// Runs the job in `delivery` (whose metadata parsed as `meta`) and says how it ended.
async fn run(
    shared: &Shared,
    delivery: &Delivery,
    meta: Result<JobMeta, wire::Malformed>,
    names: Option<Names>,
) -> Outcome {
    match admit(shared, delivery, meta, names) {
        Admission::Run(admitted) => run_in_span(shared, delivery, *admitted).await,
        Admission::Settled(outcome) => *outcome,
    }
}

/// Runs an admitted job in its tracing span, between its middleware's hooks.
async fn run_in_span(shared: &Shared, delivery: &Delivery, admitted: Admitted) -> Outcome {
    let ctx = admitted.ctx.clone();
    let timeout = admitted.timeout(shared);
    let headers = wire::headers(&delivery.properties);
    let info = JobInfo::new(&ctx, Some(headers));
    let hooked = !shared.middleware.is_empty();
    if hooked {
        shared.middleware.before(&info);
    }
    let started = Instant::now();
    let traceparent = wire::str_ref(headers, trace::TRACEPARENT).ok().flatten();
    // On the heap: the run's future is large (the job's own, the timer, the panic guard),
    // and the span's and trace context's wrappers would each copy it (docs/performance.md).
    let run = Box::pin(run_admitted(shared, admitted));
    let outcome = trace::in_job(&ctx, traceparent, run).await;
    if hooked {
        let seen = outcome.for_middleware(timeout);
        shared.middleware.after(&info, &seen, started.elapsed());
    }
    outcome
}

impl Outcome {
    /// How middleware sees this outcome of a run.
    fn for_middleware(&self, timeout: Duration) -> middleware::Outcome {
        let (failure, ran) = match self {
            Outcome::Done | Outcome::AlreadyRan => return middleware::Outcome::Ok,
            Outcome::Snoozed { delay, .. } => {
                return middleware::Outcome::Snoozed { delay: *delay }
            }
            Outcome::Failed { failure, ran } => (failure, ran.as_ref()),
        };
        let retry = ran.is_some_and(|r| !r.fail_now && r.meta.attempt < r.max_attempts);
        let error = failure.message.clone();
        match failure.kind {
            FailureKind::Panic => middleware::Outcome::Panicked {
                message: error,
                retry,
            },
            FailureKind::Timeout => middleware::Outcome::TimedOut { timeout, retry },
            _ if retry => middleware::Outcome::Retry { error },
            _ => middleware::Outcome::Failed { error },
        }
    }
}

impl Admitted {
    fn timeout(&self, shared: &Shared) -> Duration {
        self.registration
            .timeout
            .unwrap_or(shared.config.job_timeout)
    }
}

/// Checks that `delivery` can run here: its metadata reads, it is not a run this worker
/// already finished, its job is linked in and its arguments decode.
fn admit(
    shared: &Shared,
    delivery: &Delivery,
    meta: Result<JobMeta, wire::Malformed>,
    names: Option<Names>,
) -> Admission {
    let rejected = |failure| Admission::Settled(Box::new(Outcome::Failed { failure, ran: None }));
    let meta = match meta {
        Ok(meta) => meta,
        Err(reason) => {
            warn!(queue = %delivery.routing_key, %reason, "malformed message; moving it to the failed queue");
            return rejected(Failure::new(FailureKind::Malformed, reason.0));
        }
    };
    let run_key = recent::RunKey::of(&meta, wire::headers(&delivery.properties));
    if shared.recent.contains(&run_key) {
        if poison::redeliveries(delivery) > 0 {
            info!(job.id = %meta.id, job.name = %meta.name, attempt = meta.attempt, "redelivered job already ran here (its ack was lost); acking it without running it again");
            return Admission::Settled(Box::new(Outcome::AlreadyRan));
        }
        warn!(job.id = %meta.id, job.name = %meta.name, "duplicate job id; moving it to the failed queue");
        return rejected(Failure::new(
            FailureKind::Duplicate,
            format!(
                "duplicate job id {}: attempt {} of it already ran on this worker; a publisher sent the same job id twice",
                meta.id, meta.attempt
            ),
        ));
    }
    let Some(registration) = shared.registry.get(&meta.name) else {
        warn!(job.id = %meta.id, job.name = %meta.name, "no job of that name in this worker; moving it to the failed queue");
        return rejected(Failure::new(
            FailureKind::UnknownJob,
            format!(
                "unknown job {:?}: this worker runs {:?}",
                meta.name,
                shared.registry.names()
            ),
        ));
    };
    let names = names.unwrap_or_else(|| Names::of(&meta));
    let ctx = registration.context(
        &meta,
        names,
        shared.config.max_attempts,
        shared.state.clone(),
    );
    let max_attempts = ctx.max_attempts;
    match (registration.decode)(meta.format, &delivery.data, ctx.clone()) {
        Ok(job) => Admission::Run(Box::new(Admitted {
            meta,
            registration,
            job,
            run_key,
            max_attempts,
            ctx,
        })),
        Err(reason) => {
            warn!(job.id = %meta.id, job.name = %meta.name, %reason, "cannot decode the job's arguments; moving it to the failed queue");
            rejected(Failure::new(
                FailureKind::Undecodable,
                format!(
                    "cannot decode the arguments of {:?} as {}: {reason}",
                    meta.name, meta.format
                ),
            ))
        }
    }
}

/// Runs an admitted job under its timeout and the panic guard, and says how it ended.
async fn run_admitted(shared: &Shared, admitted: Admitted) -> Outcome {
    let Admitted {
        meta,
        registration,
        job,
        run_key,
        max_attempts,
        ..
    } = admitted;
    let timeout = registration.timeout.unwrap_or(shared.config.job_timeout);
    // With "job done" below, at debug: a log that shows every job a worker took and how it
    // ended (Sidekiq's start/done lines), when asked for; the chaos tests read it.
    debug!(job.id = %meta.id, job.name = %meta.name, queue = %meta.queue, attempt = meta.attempt, "job started");
    let started = Instant::now();
    // On timeout the job's future is dropped: it stops at its next `.await`.
    let result = tokio::time::timeout(timeout, panic::catch(job)).await;
    let elapsed = started.elapsed();
    let mut fail_now = false;
    let failure = match result {
        Ok(Ok(Ok(()))) => {
            // At debug under its own target: formatting and writing a line is the largest
            // share of a tiny job's cost in the worker (docs/performance.md), so it is only
            // done when asked for, e.g. `RUST_LOG=info,palermo::worker=debug`.
            debug!(job.id = %meta.id, job.name = %meta.name, queue = %meta.queue, attempt = meta.attempt, ?elapsed, "job done");
            shared.recent.insert(run_key);
            return Outcome::Done;
        }
        Ok(Ok(Err(job_error))) => {
            match job_error.kind {
                ErrorKind::Snooze(delay) => return Outcome::Snoozed { meta, delay },
                ErrorKind::FailNow => fail_now = true,
                ErrorKind::Retry => {}
            }
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
    Outcome::Failed {
        failure,
        ran: Some(Ran {
            meta,
            max_attempts,
            backoff: registration.backoff.unwrap_or(shared.config.backoff),
            fail_now,
            elapsed,
        }),
    }
}

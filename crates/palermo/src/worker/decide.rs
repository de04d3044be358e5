//! Running one job and deciding what follows: the one place a job's outcome is decided. It
//! knows no broker: the worker carries a [`Decision`] out on the broker (`execute.rs`), the
//! testing mode in memory (`testing/drain.rs`), so a test's fake runs jobs by the same rules.
//!
//! - success → [`Decision::Succeeded`]; for a step of a chain, its next step follows, built
//!   from the step's header by [`crate::wire::chain::ChainHeader::next_step`] for the
//!   worker (`chain.rs`) and the testing mode alike;
//! - [`crate::JobError::snooze`] → [`Decision::Snooze`]: again after its delay, no attempt used;
//! - an error, a panic or a timeout with attempts left → [`Decision::Retry`] as the next
//!   attempt, after the [`crate::retry`] backoff's delay;
//! - [`crate::JobError::fail_now`], the last attempt, or arguments that do not decode →
//!   [`Decision::Fail`], to the failed queue;
//! - a job an operator cancelled ([`crate::control::cancellations`]) → [`Decision::Cancelled`]:
//!   not run at all when it was cancelled before it started; when it was cancelled while it
//!   ran, whatever the run returns, or the run dropped after the cancel grace period. Never
//!   retried, never failed.
//!
//! A job's settings come first, the application's ([`Retries`]) fill in what it leaves out;
//! the enqueuer's max attempts, written in the message, come before both.

use std::{
    backtrace::BacktraceStatus,
    sync::Arc,
    time::{Duration, Instant},
};

use lapin::types::FieldTable;
use tracing::debug;

pub(crate) use super::failure::{Failure, FailureKind};
use super::{
    failure::GaveUp,
    panic::{self, Panicked},
};
use crate::{
    config::WorkerConfig,
    job::{CancelSignal, ErrorKind, JobResult},
    middleware::{self, JobInfo, Outcome},
    registry::{Names, Registration},
    retry::Backoff,
    state::StateMap,
    trace,
    wire::{self, JobMeta},
};

/// The application's retry settings: what a job gets when it sets none itself. The worker's
/// come from its [`WorkerConfig`], the fake's from [`crate::testing::Fake::with_config`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Retries {
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub job_timeout: Duration,
    /// How long a cancelled run may go on before it is dropped.
    pub cancel_grace: Duration,
}

impl Retries {
    pub fn of(config: &WorkerConfig) -> Self {
        Self {
            max_attempts: config.max_attempts,
            backoff: config.backoff,
            job_timeout: config.job_timeout,
            cancel_grace: config.cancel_grace,
        }
    }
}

/// One job to run: its message's metadata, body and headers, and what it runs with.
pub(crate) struct Job<'a> {
    pub meta: &'a JobMeta,
    pub registration: &'static Registration,
    pub body: &'a [u8],
    pub headers: Option<&'a FieldTable>,
    pub names: Names,
    pub state: Arc<StateMap>,
    /// Its cancellation, raised already when it was cancelled before it started.
    pub cancel: Arc<CancelSignal>,
}

/// What follows one run of a job.
#[derive(Debug)]
pub(crate) enum Decision {
    /// It succeeded.
    Succeeded,
    /// It asked to run again after `delay`, as the same attempt.
    Snooze { delay: Duration },
    /// It failed and attempts remain: it runs again as `next`.
    Retry { failure: Failure, next: NextAttempt },
    /// It failed for good: to the failed queue. `max_attempts` is `None` when it never ran.
    Fail {
        failure: Failure,
        gave_up: GaveUp,
        max_attempts: Option<u32>,
    },
    /// An operator cancelled it: acked, not retried, not failed. `ran` is false when it was
    /// cancelled before it started (then it never ran).
    Cancelled { by: String, at: i64, ran: bool },
}

/// The run a retry schedules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NextAttempt {
    /// Its attempt number.
    pub attempt: u32,
    /// The job's max attempts, written into the message.
    pub max_attempts: u32,
    /// How long it waits.
    pub delay: Duration,
}

/// A run and its decision.
#[derive(Debug)]
pub(crate) struct Ran {
    pub decision: Decision,
    /// How long the job's code ran (zero when it never did).
    pub elapsed: Duration,
    /// The timeout it ran under.
    pub timeout: Duration,
}

/// Decodes `job` and runs it under its timeout, the panic guard, its tracing span and
/// `middleware`'s hooks, and decides what follows.
pub(crate) async fn run(job: Job<'_>, retries: &Retries, middleware: &middleware::Stack) -> Ran {
    let Job {
        meta,
        registration,
        body,
        headers,
        names,
        state,
        cancel,
    } = job;
    let timeout = registration.timeout.unwrap_or(retries.job_timeout);
    if cancel.is_raised() {
        let decision = Decision::cancelled(&cancel, false);
        let elapsed = Duration::ZERO;
        return Ran {
            decision,
            elapsed,
            timeout,
        };
    }
    let mut ctx = registration.context(meta, names, retries.max_attempts, state, cancel.clone());
    ctx.batch = headers
        .and_then(crate::wire::batch::outcome_of)
        .map(Arc::new);
    let code = match (registration.decode)(meta.format, body, ctx.clone()) {
        Ok(code) => code,
        Err(reason) => {
            let message = format!(
                "cannot decode the arguments of {:?} as {}: {reason}",
                meta.name, meta.format
            );
            let failure = Failure::new(FailureKind::Undecodable, message);
            return Ran::rejected(failure, retries);
        }
    };
    let info = JobInfo::new(&ctx, headers);
    // Without middleware nothing is built for it: the worker's hot path (docs/performance.md).
    let hooked = !middleware.is_empty();
    if hooked {
        middleware.before(&info);
    }
    let started = Instant::now();
    let traceparent = headers.and_then(|h| wire::str_ref(h, trace::TRACEPARENT).ok().flatten());
    // On the heap: the run's future is large (the job's own, the timer, the panic guard),
    // and the span's and trace context's wrappers would each copy it (docs/performance.md).
    let guarded = Box::pin(async {
        // With "job done" below, at debug: a log that shows every job a worker took and how
        // it ended (Sidekiq's start/done lines), when asked for; the chaos tests read it.
        debug!(job.id = %meta.id, job.name = %meta.name, queue = %meta.queue, attempt = meta.attempt, "job started");
        // On timeout the job's future is dropped: it stops at its next `.await`; so it is,
        // `cancel_grace` after a cancellation (`None`).
        let run = tokio::time::timeout(timeout, panic::catch(code));
        let dropped = async {
            cancel.raised().await;
            tokio::time::sleep(retries.cancel_grace).await;
        };
        let result = tokio::select! {
            biased;
            result = run => Some(result),
            () = dropped => None,
        };
        if let Some(Ok(Ok(Ok(())))) = result {
            // At debug: formatting and writing a line is the largest share of a tiny job's
            // cost in the worker (docs/performance.md), so it is only done when asked for,
            // e.g. `RUST_LOG=info,palermo::worker=debug`.
            let elapsed = started.elapsed();
            debug!(job.id = %meta.id, job.name = %meta.name, queue = %meta.queue, attempt = meta.attempt, ?elapsed, "job done");
        }
        result
    });
    let result = trace::in_job(&ctx, traceparent, guarded).await;
    let elapsed = started.elapsed();
    let backoff = registration.backoff.unwrap_or(retries.backoff);
    let decision = match result {
        // Cancelled while it ran (or dropped, `None`): whatever it returned, it was told.
        _ if cancel.is_raised() => Decision::cancelled(&cancel, true),
        Some(Ok(ran)) => decide(ran, meta.attempt, ctx.max_attempts, &backoff),
        Some(Err(_)) | None => {
            let failure =
                Failure::new(FailureKind::Timeout, format!("timed out after {timeout:?}"));
            after_failure(failure, false, meta.attempt, ctx.max_attempts, &backoff)
        }
    };
    let ran = Ran {
        decision,
        elapsed,
        timeout,
    };
    if hooked {
        middleware.after(&info, &ran.outcome(), elapsed);
    }
    ran
}

/// What follows a run that returned `result` (or panicked) on `attempt` of `max_attempts`.
fn decide(
    result: Result<JobResult, Panicked>,
    attempt: u32,
    max_attempts: u32,
    backoff: &Backoff,
) -> Decision {
    let (failure, fail_now) = match result {
        Ok(Ok(())) => return Decision::Succeeded,
        Ok(Err(job_error)) => {
            let fail_now = match job_error.kind {
                ErrorKind::Snooze(delay) => return Decision::Snooze { delay },
                ErrorKind::FailNow => true,
                ErrorKind::Retry => false,
            };
            let error = job_error.error();
            let backtrace = match error.backtrace().status() {
                BacktraceStatus::Captured => Some(error.backtrace().to_string()),
                _ => None,
            };
            let failure = Failure {
                kind: FailureKind::Error,
                message: format!("{error:#}"),
                backtrace,
            };
            (failure, fail_now)
        }
        Err(panicked) => {
            let failure = Failure {
                kind: FailureKind::Panic,
                message: format!("panicked: {}", panicked.message),
                backtrace: panicked.backtrace,
            };
            (failure, false)
        }
    };
    after_failure(failure, fail_now, attempt, max_attempts, backoff)
}

/// A retry while attempts remain and the job did not say `fail_now`; else the failed queue.
fn after_failure(
    failure: Failure,
    fail_now: bool,
    attempt: u32,
    max_attempts: u32,
    backoff: &Backoff,
) -> Decision {
    let gave_up = if fail_now {
        GaveUp::FailNow
    } else if attempt >= max_attempts {
        GaveUp::AttemptsExhausted
    } else {
        let next = NextAttempt {
            attempt: attempt + 1,
            max_attempts,
            delay: backoff.delay(attempt),
        };
        return Decision::Retry { failure, next };
    };
    Decision::Fail {
        failure,
        gave_up,
        max_attempts: Some(max_attempts),
    }
}

impl Decision {
    /// The decision for a job whose `cancel` signal is raised; `ran`: it started.
    fn cancelled(cancel: &CancelSignal, ran: bool) -> Decision {
        let (by, at) = cancel.by().cloned().unwrap_or_default();
        Decision::Cancelled { by, at, ran }
    }

    /// Whether the run did not fail: it succeeded, snoozed or was cancelled.
    pub fn is_ok(&self) -> bool {
        matches!(
            self,
            Decision::Succeeded | Decision::Snooze { .. } | Decision::Cancelled { .. }
        )
    }
}

impl Ran {
    /// A message that cannot run at all (malformed, unknown job, undecodable).
    pub fn rejected(failure: Failure, retries: &Retries) -> Self {
        let decision = Decision::Fail {
            failure,
            gave_up: GaveUp::NotRetryable,
            max_attempts: None,
        };
        Ran {
            decision,
            elapsed: Duration::ZERO,
            timeout: retries.job_timeout,
        }
    }

    /// How middleware and the testing mode see this run.
    pub fn outcome(&self) -> Outcome {
        let (failure, retry) = match &self.decision {
            Decision::Succeeded => return Outcome::Ok,
            Decision::Snooze { delay } => return Outcome::Snoozed { delay: *delay },
            Decision::Cancelled { by, at, .. } => {
                return Outcome::Cancelled {
                    by: by.clone(),
                    at_ms: *at,
                }
            }
            Decision::Retry { failure, .. } => (failure, true),
            Decision::Fail { failure, .. } => (failure, false),
        };
        let error = failure.message.clone();
        match failure.kind {
            FailureKind::Panic => Outcome::Panicked {
                message: error,
                retry,
            },
            FailureKind::Timeout => Outcome::TimedOut {
                timeout: self.timeout,
                retry,
            },
            _ if retry => Outcome::Retry { error },
            _ => Outcome::Failed { error },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobError;

    fn exact() -> Backoff {
        Backoff::exponential(Duration::from_secs(2), Duration::from_secs(60)).with_jitter(0.0)
    }

    fn error(kind: FailureKind) -> Failure {
        Failure::new(kind, "it broke")
    }

    #[test]
    fn retries_while_attempts_remain() {
        let b = exact();
        let next = |d| match d {
            Decision::Retry { next, .. } => Some(next),
            _ => None,
        };
        let retried = after_failure(error(FailureKind::Error), false, 1, 3, &b);
        assert_eq!(
            next(retried),
            Some(NextAttempt {
                attempt: 2,
                max_attempts: 3,
                delay: Duration::from_secs(2)
            })
        );
        let last = after_failure(error(FailureKind::Error), false, 3, 3, &b);
        assert!(matches!(
            last,
            Decision::Fail {
                gave_up: GaveUp::AttemptsExhausted,
                max_attempts: Some(3),
                ..
            }
        ));
        let once = after_failure(error(FailureKind::Error), false, 1, 1, &b);
        assert!(next(once).is_none(), "1 means no retry");
    }

    #[test]
    fn fail_now_and_snooze_use_no_retry() {
        let b = exact();
        let failed = decide(Ok(Err(JobError::fail_now(anyhow::anyhow!("no")))), 1, 5, &b);
        assert!(
            matches!(&failed, Decision::Fail { gave_up: GaveUp::FailNow, failure, .. } if failure.message == "no")
        );
        let snoozed = decide(Ok(Err(JobError::snooze(Duration::from_secs(9)))), 5, 5, &b);
        assert!(matches!(snoozed, Decision::Snooze { delay } if delay.as_secs() == 9));
        assert!(matches!(decide(Ok(Ok(())), 1, 1, &b), Decision::Succeeded));
    }

    #[test]
    fn a_panic_is_retried_like_an_error_and_shown_as_a_panic() {
        let panicked = Panicked {
            message: "boom".into(),
            backtrace: None,
        };
        let ran = Ran {
            decision: decide(Err(panicked), 1, 2, &exact()),
            elapsed: Duration::ZERO,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(
            ran.outcome(),
            Outcome::Panicked {
                message: "panicked: boom".into(),
                retry: true
            }
        );
        let timed_out = Ran {
            decision: after_failure(error(FailureKind::Timeout), false, 2, 2, &exact()),
            ..ran
        };
        assert_eq!(
            timed_out.outcome(),
            Outcome::TimedOut {
                timeout: Duration::from_secs(1),
                retry: false
            }
        );
    }
}

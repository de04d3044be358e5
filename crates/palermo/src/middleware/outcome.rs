//! How one run of a job ended, as middleware and [`crate::testing`] see it.

use std::time::Duration;

/// How one run of a job ended. A run that failed says whether a retry follows: `retry` is
/// false after [`crate::JobError::fail_now`] or on the last attempt, when the job goes to the
/// failed queue.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// The job succeeded.
    Ok,
    /// The job returned an error; it runs again later (attempts remain).
    Retry {
        /// The error, with its causes (`{:#}`).
        error: String,
    },
    /// The job failed for good (an error on its last attempt, or `fail_now`): it goes to the
    /// failed queue.
    Failed {
        /// The error, with its causes (`{:#}`).
        error: String,
    },
    /// The job asked to run again after `delay` ([`crate::JobError::snooze`]); no attempt used.
    Snoozed {
        /// How long until it runs again.
        delay: Duration,
    },
    /// The run took longer than its timeout and was stopped.
    TimedOut {
        /// The timeout it overran.
        timeout: Duration,
        /// Whether it runs again (attempts remain).
        retry: bool,
    },
    /// The job panicked.
    Panicked {
        /// The panic message.
        message: String,
        /// Whether it runs again (attempts remain).
        retry: bool,
    },
}

impl Outcome {
    /// Whether the run did not fail: it succeeded or snoozed.
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok | Outcome::Snoozed { .. })
    }

    /// Whether the job runs again after this run (a retry or a snooze).
    pub fn runs_again(&self) -> bool {
        match self {
            Outcome::Ok | Outcome::Failed { .. } => false,
            Outcome::Retry { .. } | Outcome::Snoozed { .. } => true,
            Outcome::TimedOut { retry, .. } | Outcome::Panicked { retry, .. } => *retry,
        }
    }

    /// The outcome of a run that returned `result` (or panicked, or timed out) on `attempt`
    /// of `max_attempts`.
    pub(crate) fn of(
        result: Result<Result<crate::JobResult, crate::worker::Panicked>, Duration>,
        attempt: u32,
        max_attempts: u32,
    ) -> Self {
        use crate::job::ErrorKind;
        let retry = attempt < max_attempts;
        match result {
            Ok(Ok(Ok(()))) => Outcome::Ok,
            Ok(Ok(Err(e))) => match e.kind {
                ErrorKind::Snooze(delay) => Outcome::Snoozed { delay },
                ErrorKind::Retry if retry => Outcome::Retry {
                    error: format!("{:#}", e.error),
                },
                _ => Outcome::Failed {
                    error: format!("{:#}", e.error),
                },
            },
            Ok(Err(panicked)) => Outcome::Panicked {
                message: panicked.message,
                retry,
            },
            Err(timeout) => Outcome::TimedOut { timeout, retry },
        }
    }
}

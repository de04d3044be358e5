//! How one run of a job ended, as middleware and [`crate::testing`] see it. The worker's
//! decision (`worker/decide.rs`) makes it; this module only describes it. It lives under
//! `error` because [`crate::Error::InlineJobFailed`] carries one and `error.rs` depends on
//! nothing else in the crate; users name it `palermo::middleware::Outcome`.

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
        /// The panic message as the failure records it: `panicked: ` and the job's message.
        message: String,
        /// Whether it runs again (attempts remain).
        retry: bool,
    },
    /// An operator cancelled the job (`palermo jobs cancel`): while it ran (it returned, or
    /// was dropped after the cancel grace period), or before it started (then it did not
    /// run; a worker's middleware does not see that case, [`crate::testing`]'s runs do).
    /// Not a failure; it does not run again.
    Cancelled {
        /// Who cancelled it.
        by: String,
        /// When, in milliseconds since the Unix epoch.
        at_ms: i64,
    },
}

impl Outcome {
    /// Whether the run did not fail: it succeeded, snoozed or was cancelled.
    pub fn is_ok(&self) -> bool {
        matches!(
            self,
            Outcome::Ok | Outcome::Snoozed { .. } | Outcome::Cancelled { .. }
        )
    }

    /// Whether the job runs again after this run (a retry or a snooze).
    pub fn runs_again(&self) -> bool {
        match self {
            Outcome::Ok | Outcome::Failed { .. } | Outcome::Cancelled { .. } => false,
            Outcome::Retry { .. } | Outcome::Snoozed { .. } => true,
            Outcome::TimedOut { retry, .. } | Outcome::Panicked { retry, .. } => *retry,
        }
    }
}

//! One log line per finished job, at info: what the demo's terminal shows.
//!
//! The worker logs a job's start and end at debug only (formatting a line is the largest
//! share of a tiny job's cost, docs/performance.md), and its failures at warn. Run at debug
//! to see every job, and a newcomer's terminal fills with the worker's debug lines; run at
//! info, and a job that succeeded leaves no trace but its own output. This middleware adds
//! the missing line, `job done` (the fields of the worker's debug line), so that at info
//! each run ends with one line: `job done` here, or the worker's `job failed; retrying` /
//! `job failed; moving it to the failed queue` warning. An application that wants the same
//! writes the same few lines; the library does not, to keep its per-job cost where it is.

use std::time::Duration;

use palermo::middleware::{JobInfo, Middleware, Outcome};
use tracing::info;

/// Logs `job done` at info after every run that succeeded.
#[derive(Debug, Default)]
pub struct JobLines;

impl Middleware for JobLines {
    fn after(&self, job: &JobInfo<'_>, outcome: &Outcome, elapsed: Duration) {
        // Failures have the worker's warning already, and snoozes its `job snoozed` line.
        if matches!(outcome, Outcome::Ok) {
            let ctx = job.context();
            info!(job.id = %ctx.id, job.name = %ctx.name, queue = %ctx.queue, attempt = ctx.attempt, ?elapsed, "job done");
        }
    }
}

//! Healing the broker objects Palermo owns when they disappear under a running process.
//!
//! An operator deleting the failed queue in the management UI, a policy, a mistake: the next
//! mandatory publish comes back unroutable, or a publish to a deleted exchange closes its
//! channel with `404 NOT_FOUND`. Nothing is lost (the job stays unacked), but without care
//! the job goes straight back to its queue and is delivered again at once: a thousand
//! attempts and error lines a second, and the job is never recorded. So:
//!
//! - a publish to a queue that came back unroutable declares the queue again and publishes
//!   once more ([`publish_declaring`]); a closed channel is opened again by the slot, which
//!   declares the exchange and the failed queue on it, and the delay layout is declared again
//!   after any failed delayed publish;
//! - a job that still cannot be handed over is held back before it is returned, for a delay
//!   that doubles with every consecutive failure of the worker (up to [`MAX_HOLD`]), so the
//!   attempts per second stay bounded however many slots hit the fault;
//! - the failures are logged once when they start, then once per [`LOG_INTERVAL`] with a
//!   count, never once per attempt.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use lapin::{BasicProperties, Channel};
use tracing::{error, info, warn};

use crate::{broker, broker::topology, deployment::Deployment, error::Error};

/// The first hold before a job that could not be handed over is returned to its queue.
const FIRST_HOLD: Duration = Duration::from_millis(500);
/// The longest hold; short enough that a stop request is not kept waiting long.
pub(crate) const MAX_HOLD: Duration = Duration::from_secs(5);
/// How often a fault that goes on is logged again (with the count since the last line).
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One process's record of failed hand-overs: the backoff they share and the log they
/// share, so that many slots failing together count as one fault.
#[derive(Debug, Default)]
pub(crate) struct Mender {
    state: Mutex<State>,
    /// Whether a failure is on record: every successful job asks, so the answer for the
    /// common case (no fault) must not take the lock the slots share.
    troubled: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// Failures since the last success.
    consecutive: u32,
    /// Failures since the last log line.
    unlogged: u64,
    logged_at: Option<Instant>,
}

impl Mender {
    /// Records a hand-over that failed with `error`; returns how long to hold the job before
    /// returning it to its queue.
    pub fn failed(&self, queue: &str, error: &Error) -> Duration {
        let mut state = self.lock();
        self.troubled.store(true, Ordering::Relaxed);
        state.consecutive = state.consecutive.saturating_add(1);
        state.unlogged += 1;
        let hold = hold(state.consecutive);
        let due = state
            .logged_at
            .is_none_or(|at| at.elapsed() >= LOG_INTERVAL);
        if due {
            let count = std::mem::take(&mut state.unlogged);
            state.logged_at = Some(Instant::now());
            error!(
                %error, queue, failures = count, consecutive = state.consecutive, ?hold,
                "could not hand jobs over (retry or failed queue); returning them to their queue after a pause"
            );
        }
        hold
    }

    /// Records a hand-over that succeeded: the fault, if there was one, is over.
    pub fn succeeded(&self) {
        if !self.troubled.load(Ordering::Relaxed) {
            return;
        }
        let mut state = self.lock();
        self.troubled.store(false, Ordering::Relaxed);
        if state.consecutive == 0 {
            return;
        }
        let (failures, unlogged) = (state.consecutive, state.unlogged);
        *state = State::default();
        info!(
            failures,
            unlogged, "jobs are handed over again after failed attempts"
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Counters cannot be left inconsistent by a panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The hold after `consecutive` failures: [`FIRST_HOLD`] doubling, up to [`MAX_HOLD`].
fn hold(consecutive: u32) -> Duration {
    let doublings = consecutive.saturating_sub(1).min(16);
    FIRST_HOLD.saturating_mul(1 << doublings).min(MAX_HOLD)
}

/// Publishes to `queue` and waits for the confirm; when the message comes back unroutable
/// (the queue was deleted), declares the queue again as `deployment` does (its type, and its
/// `x-max-priority` for a priority queue) and publishes once more.
pub(crate) async fn publish_declaring(
    channel: &Channel,
    queue: &str,
    deployment: &Deployment,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), Error> {
    match broker::publish_confirmed(channel, queue, body, properties.clone()).await {
        Err(Error::Unroutable { .. }) => {
            warn!(
                queue,
                "a publish came back unroutable; declaring the queue again"
            );
            let max_priority = deployment.priorities.of(queue);
            topology::declare_job_queue(channel, queue, deployment.queue_type, max_priority)
                .await?;
            broker::publish_confirmed(channel, queue, body, properties).await
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hold_doubles_up_to_its_cap() {
        assert_eq!(hold(1), FIRST_HOLD);
        assert_eq!(hold(2), FIRST_HOLD * 2);
        assert_eq!(hold(4), Duration::from_secs(4));
        assert_eq!(hold(5), MAX_HOLD);
        assert_eq!(hold(u32::MAX), MAX_HOLD);
    }

    #[test]
    fn failures_are_counted_until_a_success() {
        let mender = Mender::default();
        let error = Error::Unroutable { queue: "q".into() };
        assert_eq!(mender.failed("q", &error), FIRST_HOLD);
        assert_eq!(mender.failed("q", &error), FIRST_HOLD * 2);
        assert_eq!(
            mender.lock().unlogged,
            1,
            "the first was logged, the second not"
        );
        mender.succeeded();
        assert_eq!(mender.failed("q", &error), FIRST_HOLD);
    }
}

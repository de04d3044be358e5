//! Running recorded jobs in-process, as a worker would, without waiting real time.

use std::{future::Future, pin::Pin, sync::Arc, time::SystemTime};

use uuid::Uuid;

use super::{lock, Fake, Recorded, Run};
use crate::{
    job::CancelSignal,
    registry::{Names, Registry},
    wire::{
        self,
        chain::{ChainHeader, Due},
        header,
    },
    worker::decide::{self, Decision, Failure, FailureKind, Ran},
    Error,
};

/// Runs after which [`Fake::drain`] gives up: jobs that snooze or enqueue themselves forever.
const MAX_RUNS: usize = 10_000;

impl Fake {
    /// Runs every recorded job, and every job they lead to (retries, snoozes, jobs they
    /// enqueue, a chain's next step once a step succeeded), until none is left; returns
    /// each run in order.
    ///
    /// Jobs run one at a time, in the order of their due times, by the worker's rules and the
    /// retry settings of [`Fake::with_config`]; a retry is due its backoff delay after the
    /// run that failed, and the drain does not wait for it. A job that goes to the failed
    /// queue is dropped, its last run saying so ([`super::Outcome::runs_again`] is false).
    /// Panics when the test binary links two jobs of one name, or after 10 000 runs (a job
    /// that snoozes forever).
    pub async fn drain(&self) -> Vec<Run> {
        let mut runs = Vec::new();
        while let Some(job) = self.next_due() {
            let run = self.run_one(job).await;
            lock(&self.inner.runs).push(run.clone());
            runs.push(run);
            if runs.len() >= MAX_RUNS {
                panic!("Fake::drain ran {MAX_RUNS} jobs without running out: does a job snooze or enqueue itself forever?");
            }
        }
        runs
    }

    /// Inline mode: runs what is recorded (the job `id` just enqueued, first of all), and
    /// says whether `id` failed for good.
    pub(super) fn run_inline(
        &self,
        id: Uuid,
    ) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send + '_>> {
        // Boxed: a job run inline may enqueue (and so run inline) another job.
        Box::pin(async move {
            let runs = self.drain().await;
            match runs.into_iter().rev().find(|run| run.id == id) {
                Some(last) if !last.outcome.is_ok() && !last.outcome.runs_again() => {
                    Err(Error::InlineJobFailed {
                        job: last.name,
                        outcome: last.outcome,
                    })
                }
                _ => Ok(()),
            }
        })
    }

    /// Takes the job due first, moving the virtual clock to its due time.
    fn next_due(&self) -> Option<Recorded> {
        let mut pending = lock(&self.inner.pending);
        let (index, _) = pending
            .iter()
            .enumerate()
            .min_by_key(|(i, job)| (job.run_at, *i))?;
        let job = pending.remove(index)?;
        let mut clock = lock(&self.inner.clock);
        *clock = (*clock).max(job.run_at);
        Some(job)
    }

    fn registry(&self) -> Arc<Registry> {
        let mut registry = lock(&self.inner.registry);
        if let Some(registry) = registry.as_ref() {
            return registry.clone();
        }
        let linked = match Registry::linked() {
            Ok(linked) => Arc::new(linked),
            Err(e) => panic!("Fake::drain: {e}"),
        };
        *registry = Some(linked.clone());
        linked
    }

    /// Runs one job as a worker would (`worker/decide.rs`) and records what follows it: a
    /// retry or a snooze goes back into the recording, due at its virtual time.
    async fn run_one(&self, job: Recorded) -> Run {
        let at = *lock(&self.inner.clock);
        let retries = *lock(&self.inner.retries);
        let chain = ChainHeader::read(wire::headers(&job.properties));
        let ran = match (self.registry().get(&job.name), &chain) {
            // As the worker: a step whose chain cannot go on after it does not run.
            (_, Err(reason)) => {
                let failure = Failure::new(FailureKind::Malformed, reason.0.clone());
                Ran::rejected(failure, &retries)
            }
            (Some(registration), Ok(_)) => {
                let run = decide::Job {
                    meta: &job.meta,
                    registration,
                    body: &job.body,
                    headers: job.properties.headers().as_ref(),
                    names: Names::of(&job.meta),
                    state: lock(&self.inner.state).clone(),
                    cancel: self.signal(&job.id),
                };
                let middleware = lock(&self.inner.middleware).clone();
                decide::run(run, &retries, &middleware).await
            }
            (None, Ok(_)) => {
                let error = format!("unknown job {:?}: not linked into this test", job.name);
                Ran::rejected(Failure::new(FailureKind::UnknownJob, error), &retries)
            }
        };
        let run = Run {
            id: job.id,
            name: job.name.clone(),
            attempt: job.attempt,
            at,
            outcome: ran.outcome(),
        };
        if let (Decision::Succeeded, Ok(Some(chain))) = (&ran.decision, &chain) {
            self.chain_on(chain, at);
        }
        self.follow(job, at, &ran.decision);
        run
    }

    /// Records the step that follows a chain step that succeeded at `at`, as the worker
    /// publishes it (`worker/chain.rs`), due after its delay on the virtual clock.
    fn chain_on(&self, chain: &ChainHeader, at: SystemTime) {
        let next = match chain.next_step() {
            Ok(Some(next)) => next,
            Ok(None) => return,
            Err(e) => panic!("Fake::drain: chain {}: {e}", chain.id),
        };
        let queue = next.meta.queue.clone();
        let mut job = match super::recorded(&queue, &next.body, next.properties) {
            Ok(job) => job,
            Err(e) => panic!("Fake::drain: chain {}: {e}", chain.id),
        };
        let due = match next.due {
            None => None,
            Some(Due::After(delay)) => Some(at + delay),
            Some(Due::At(time)) => Some(time.max(at)),
        };
        job.due = due;
        job.run_at = due.unwrap_or(at);
        lock(&self.inner.pending).push_back(job);
    }

    /// Carries out `decision` in memory, for a job that ran at `at`: a snooze or a retry is
    /// recorded again, due after its delay, as the worker would publish it.
    fn follow(&self, mut job: Recorded, at: SystemTime, decision: &Decision) {
        let (attempt, delay) = match decision {
            Decision::Snooze { delay } => (job.attempt, *delay),
            Decision::Retry { next, .. } => (next.attempt, next.delay),
            Decision::Succeeded | Decision::Fail { .. } | Decision::Cancelled { .. } => return,
        };
        let due = at + delay;
        let mut headers = wire::headers(&job.properties).clone();
        wire::put_int(&mut headers, header::ATTEMPT, attempt.into());
        wire::put_int(&mut headers, header::NEXT_RUN_AT, millis(due));
        job.properties = job.properties.with_headers(headers);
        job.attempt = attempt;
        job.meta.attempt = attempt;
        job.due = Some(due);
        job.run_at = due;
        lock(&self.inner.pending).push_back(job);
    }
}

impl Fake {
    /// The signal of a run of job `id`: raised when [`Fake::cancel`] named it.
    fn signal(&self, id: &Uuid) -> Arc<CancelSignal> {
        let signal = Arc::new(CancelSignal::default());
        if let Some((by, at)) = lock(&self.inner.cancelled).get(id) {
            signal.raise(by, *at);
        }
        signal
    }
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

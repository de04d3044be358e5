//! Every job linked into a binary, found without a hand-written list.
//!
//! `#[job]` submits a [`Registration`] to a link-time collection (the `inventory` crate); a
//! worker builds a [`Registry`] from it at start-up, which is where a name used twice is
//! caught.

use std::{collections::HashMap, future::Future, pin::Pin, sync::Arc, time::Duration};

use crate::{
    error::Error,
    job::{Job, JobContext, JobResult},
    serializer::{Format, SerializeError},
};

/// A boxed job run.
pub type BoxedRun = Pin<Box<dyn Future<Output = JobResult> + Send>>;

/// How a worker finds and runs one kind of job, independent of its Rust type.
#[derive(Debug)]
pub struct Registration {
    /// The wire name.
    pub name: &'static str,
    /// The default queue.
    pub queue: &'static str,
    /// `Job::MAX_ATTEMPTS`.
    pub max_attempts: Option<u32>,
    /// `Job::TIMEOUT`.
    pub timeout: Option<Duration>,
    /// `Job::BACKOFF`.
    pub backoff: Option<crate::retry::Backoff>,
    /// `Job::LIMIT`.
    pub limit: crate::Limit,
    /// Where the job is defined, for error messages.
    pub location: &'static str,
    /// Decodes the body; on success returns the run, ready to await.
    pub decode: fn(Format, &[u8], JobContext) -> Result<BoxedRun, SerializeError>,
}

impl Registration {
    /// The registration of job `J`; `location` is `file:line` of its definition.
    pub const fn of<J: Job>(location: &'static str) -> Self {
        Self {
            name: J::NAME,
            queue: J::QUEUE,
            max_attempts: J::MAX_ATTEMPTS,
            timeout: J::TIMEOUT,
            backoff: J::BACKOFF,
            limit: J::LIMIT,
            location,
            decode: decode_and_run::<J>,
        }
    }
}

/// A job's wire name and queue as shared strings, for its context and the worker's in-flight
/// record: a worker's slot makes them when it meets a job and reuses them for the next runs
/// of the same job (`worker/stats.rs`, docs/performance.md).
#[derive(Clone, Debug)]
pub(crate) struct Names {
    pub name: Arc<str>,
    pub queue: Arc<str>,
}

impl Names {
    pub fn of(meta: &crate::wire::JobMeta) -> Self {
        Self {
            name: meta.name.as_str().into(),
            queue: meta.queue.as_str().into(),
        }
    }
}

impl Registration {
    /// The context of a run of this job from a message with metadata `meta` (and `names`):
    /// its max attempts are the enqueuer's choice first, then the job's, then
    /// `default_max_attempts`.
    pub(crate) fn context(
        &self,
        meta: &crate::wire::JobMeta,
        names: Names,
        default_max_attempts: u32,
        state: Arc<crate::state::StateMap>,
        cancel: Arc<crate::job::CancelSignal>,
    ) -> JobContext {
        JobContext {
            id: meta.id,
            name: names.name,
            queue: names.queue,
            attempt: meta.attempt,
            max_attempts: meta
                .max_attempts
                .or(self.max_attempts)
                .unwrap_or(default_max_attempts),
            state,
            cancel,
        }
    }
}

fn decode_and_run<J: Job>(
    format: Format,
    body: &[u8],
    ctx: JobContext,
) -> Result<BoxedRun, SerializeError> {
    let job: J = format.decode(body)?;
    Ok(Box::pin(job.run(ctx)))
}

inventory::collect!(Registration);

/// The jobs one worker can run, by wire name.
#[derive(Debug)]
pub struct Registry {
    jobs: HashMap<&'static str, &'static Registration>,
}

impl Registry {
    /// Every job linked into this binary; an error names both places of a name used twice.
    pub fn linked() -> Result<Self, Error> {
        Self::from_registrations(inventory::iter::<Registration>)
    }

    /// A registry of the given jobs.
    pub fn from_registrations(
        all: impl IntoIterator<Item = &'static Registration>,
    ) -> Result<Self, Error> {
        let mut jobs = HashMap::new();
        for reg in all {
            if let Some(first) = jobs.insert(reg.name, reg) {
                let (first, second) = if first.location <= reg.location {
                    (first.location, reg.location)
                } else {
                    (reg.location, first.location)
                };
                return Err(Error::DuplicateJobName {
                    name: reg.name.to_string(),
                    first: first.to_string(),
                    second: second.to_string(),
                });
            }
        }
        Ok(Self { jobs })
    }

    /// The job with this wire name.
    pub fn get(&self, name: &str) -> Option<&'static Registration> {
        self.jobs.get(name).copied()
    }

    /// The wire names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.jobs.keys().copied().collect();
        names.sort_unstable();
        names
    }
}

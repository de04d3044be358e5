//! What a worker counts for its heartbeats: runs finished and runs failed, per queue and job,
//! since the worker started, and the jobs running right now.
//!
//! The counters only grow. A heartbeat carries their current values, and the recorder adds
//! the difference from the last heartbeat it saw, so a lost, repeated or late heartbeat
//! changes no total. "Processed" counts every finished run whatever its outcome (as in
//! Sidekiq and Resque); "failed" counts the runs that ended in an error, a panic, a timeout or
//! a rejected message, including those that will be retried.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

use lapin::message::Delivery;
use uuid::Uuid;

use crate::{
    registry::Names,
    wire::{
        self,
        event::{Counter, RunningJob},
        header, JobMeta,
    },
};

/// A worker's counters and in-flight jobs, shared by its slots and its heartbeat task.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    processed: AtomicU64,
    failed: AtomicU64,
    /// queue → job → (processed, failed); nested so that counting a run looks its names up
    /// without building a key.
    per_job: Mutex<BTreeMap<String, JobCounts>>,
    running: Mutex<BTreeMap<u64, InFlight>>,
    next_key: AtomicU64,
}

/// A job in flight, written out as a [`RunningJob`] only when a heartbeat is sent: a parsed
/// job keeps its id as a `Uuid` (formatting it per job cost more than the rest of the
/// record), and shares its name and queue with the job's context.
#[derive(Debug)]
struct InFlight {
    /// The parsed id, else the `message_id` as it came (empty without one).
    id: Result<Uuid, String>,
    name: Arc<str>,
    queue: Arc<str>,
    started_at: i64,
    preview: String,
}

impl InFlight {
    fn running_job(&self) -> RunningJob {
        RunningJob {
            id: match &self.id {
                Ok(id) => id.to_string(),
                Err(raw) => raw.clone(),
            },
            name: self.name.to_string(),
            queue: self.queue.to_string(),
            started_at: self.started_at,
            preview: self.preview.clone(),
        }
    }
}

/// job → (processed, failed), for one queue.
type JobCounts = BTreeMap<String, (u64, u64)>;

/// What [`Stats::snapshot`] returns.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub processed: u64,
    pub failed: u64,
    pub counters: Vec<Counter>,
    pub jobs: Vec<RunningJob>,
}

/// A job in flight. [`Running::finished`] counts it; dropping it without that (a stop that
/// abandons the job) only takes it off the in-flight list.
#[must_use = "call finished() when the run ends"]
pub(crate) struct Running<'a> {
    stats: &'a Stats,
    key: u64,
}

impl Stats {
    /// Notes that `delivery` started running; `meta` is its parsed metadata and names, `None`
    /// for a malformed message (then it reads what it can).
    pub fn started(&self, delivery: &Delivery, meta: Option<(&JobMeta, &Names)>) -> Running<'_> {
        let job = match meta {
            Some((meta, names)) => InFlight {
                id: Ok(meta.id),
                name: names.name.clone(),
                queue: names.queue.clone(),
                started_at: wire::now_ms(),
                preview: meta.preview.clone(),
            },
            None => {
                let headers = wire::headers(&delivery.properties);
                let read = |name| wire::str_ref(headers, name).ok().flatten();
                InFlight {
                    id: Err(delivery
                        .properties
                        .message_id()
                        .as_ref()
                        .map(|id| id.to_string())
                        .unwrap_or_default()),
                    name: read(header::JOB).unwrap_or_default().into(),
                    queue: read(header::QUEUE)
                        .unwrap_or(delivery.routing_key.as_str())
                        .into(),
                    started_at: wire::now_ms(),
                    preview: read(header::PREVIEW).unwrap_or_default().to_string(),
                }
            }
        };
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        lock(&self.running).insert(key, job);
        Running { stats: self, key }
    }

    /// The counters and the jobs running now.
    pub fn snapshot(&self) -> Snapshot {
        let counters = lock(&self.per_job)
            .iter()
            .flat_map(|(queue, jobs)| {
                jobs.iter().map(|(job, (processed, failed))| Counter {
                    queue: queue.clone(),
                    job: job.clone(),
                    processed: *processed,
                    failed: *failed,
                })
            })
            .collect();
        Snapshot {
            processed: self.processed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            counters,
            jobs: lock(&self.running)
                .values()
                .map(InFlight::running_job)
                .collect(),
        }
    }
}

impl Running<'_> {
    /// Counts the run: processed, and failed unless `succeeded`.
    pub fn finished(self, succeeded: bool) {
        let failed = u64::from(!succeeded);
        // Off the in-flight list now (the drop then finds nothing); its names key the
        // counters, copied only the first time a queue or job is counted.
        let job = lock(&self.stats.running).remove(&self.key);
        if let Some(InFlight { queue, name, .. }) = job {
            let mut per_job = lock(&self.stats.per_job);
            match per_job.get_mut(&*queue) {
                Some(jobs) => count(jobs, &name, failed),
                None => {
                    let mut jobs = JobCounts::new();
                    count(&mut jobs, &name, failed);
                    per_job.insert(queue.to_string(), jobs);
                }
            }
        }
        self.stats.processed.fetch_add(1, Ordering::Relaxed);
        self.stats.failed.fetch_add(failed, Ordering::Relaxed);
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        lock(&self.stats.running).remove(&self.key);
    }
}

/// Counts one run of job `name`, failed if `failed` is 1.
fn count(jobs: &mut JobCounts, name: &str, failed: u64) {
    match jobs.get_mut(name) {
        Some((processed, failed_so_far)) => {
            *processed += 1;
            *failed_so_far += failed;
        }
        None => {
            jobs.insert(name.to_string(), (1, failed));
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a single insert, remove or increment: a panic cannot leave them torn.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

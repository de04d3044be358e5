//! What a worker counts for its heartbeats: runs finished and runs failed, per queue and job,
//! since the worker started, and the jobs running right now.
//!
//! Each slot keeps its own share ([`SlotStats`]): the job it runs now, and the names and
//! counters of the job it ran last, which the next run of the same job shares. So a run
//! touches no lock or map that other slots use; a heartbeat reads every slot's record.
//!
//! The counters only grow. A heartbeat carries their current values, and the recorder adds
//! the difference from the last heartbeat it saw, so a lost, repeated or late heartbeat
//! changes no total. "Processed" counts every finished run whatever its outcome (as in
//! Sidekiq and Resque); "failed" counts the runs that ended in an error, a panic, a timeout or
//! a rejected message, including those that will be retried.
//!
//! Beside its counters each queue and job has two histograms (`timing.rs`): how long its runs
//! took and how long its jobs waited to start; the heartbeat carries them as `timings`.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, Weak,
    },
};

use lapin::message::Delivery;
use uuid::Uuid;

use super::timing::{waited, Histogram};
use crate::{
    job::CancelSignal,
    registry::Names,
    wire::{
        self,
        event::{Counter, RunningJob, Timing},
        header, JobMeta,
    },
};

/// A worker's counters and in-flight jobs, shared by its slots and its heartbeat task.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    processed: AtomicU64,
    failed: AtomicU64,
    /// queue → job → its counters, looked up when a slot meets a job it did not run last;
    /// nested so that the lookup needs no key built.
    per_job: Mutex<BTreeMap<String, BTreeMap<String, Arc<Counts>>>>,
    /// Every live slot's in-flight record.
    slots: Mutex<Vec<Weak<Mutex<Option<InFlight>>>>>,
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
    /// The run's cancellation signal (`cancel.rs` raises it).
    cancel: Option<Arc<CancelSignal>>,
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

/// The runs of one job from one queue: finished (processed), and of them failed; how long
/// they took and how long they waited.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    processed: AtomicU64,
    failed: AtomicU64,
    duration: Histogram,
    latency: Histogram,
}

/// One slot's share of the stats ([`Stats::slot`]): the job it runs now (a slot runs one at
/// a time), and the names and counters of the job it ran last. A slot mostly runs the same
/// job from the same queue again and again; when it does, the run shares them with the run
/// before (two string comparisons) instead of making the names and finding the counters
/// again (docs/performance.md).
#[derive(Debug)]
pub(crate) struct SlotStats {
    running: Arc<Mutex<Option<InFlight>>>,
    last: Option<(Names, Arc<Counts>)>,
}

impl SlotStats {
    /// Notes that `delivery` started running on this slot; `meta` is its parsed metadata,
    /// `None` for a malformed message (then it reads what it can). With the run's guard, the
    /// job's names, for its context.
    pub fn started<'a>(
        &'a mut self,
        stats: &'a Stats,
        delivery: &Delivery,
        meta: Option<&JobMeta>,
        cancel: &Arc<CancelSignal>,
    ) -> (Running<'a>, Option<Names>) {
        let (job, counts, names) = match meta {
            Some(meta) => {
                let (names, counts) = self.job(stats, meta);
                let now = wire::now_ms();
                if let Some(waited) = waited(delivery, meta, now) {
                    counts.latency.record(waited);
                }
                let job = InFlight {
                    id: Ok(meta.id),
                    name: names.name.clone(),
                    queue: names.queue.clone(),
                    started_at: now,
                    preview: meta.preview.clone(),
                    cancel: Some(Arc::clone(cancel)),
                };
                (job, counts, Some(names))
            }
            None => {
                let headers = wire::headers(&delivery.properties);
                let read = |name| wire::str_ref(headers, name).ok().flatten();
                let job = InFlight {
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
                    cancel: None,
                };
                let counts = stats.counts(&job.queue, &job.name);
                (job, counts, None)
            }
        };
        *lock(&self.running) = Some(job);
        let running = Running {
            stats,
            record: &self.running,
            counts,
        };
        (running, names)
    }

    /// The names and counters of the job of `meta`.
    fn job(&mut self, stats: &Stats, meta: &JobMeta) -> (Names, Arc<Counts>) {
        match &self.last {
            Some((names, counts)) if *names.name == meta.name && *names.queue == meta.queue => {
                (names.clone(), Arc::clone(counts))
            }
            _ => {
                let names = Names::of(meta);
                let counts = stats.counts(&names.queue, &names.name);
                self.last = Some((names.clone(), Arc::clone(&counts)));
                (names, counts)
            }
        }
    }
}

/// What [`Stats::snapshot`] returns.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub processed: u64,
    pub failed: u64,
    pub counters: Vec<Counter>,
    pub timings: Vec<Timing>,
    pub jobs: Vec<RunningJob>,
}

/// A job in flight ([`SlotStats::started`]). [`Running::finished`] counts it; dropping it without that (a stop that
/// abandons the job) only takes it off the in-flight list.
#[must_use = "call finished() when the run ends"]
pub(crate) struct Running<'a> {
    stats: &'a Stats,
    record: &'a Mutex<Option<InFlight>>,
    counts: Arc<Counts>,
}

impl Stats {
    /// Raises the cancellation signal of job `id` if a slot runs it; `true` when one did.
    pub fn raise(&self, id: &Uuid, by: &str, at: i64) -> bool {
        let slots: Vec<_> = lock(&self.slots).iter().filter_map(Weak::upgrade).collect();
        let mut raised = false;
        for slot in slots {
            if let Some(job) = lock(&slot).as_ref() {
                if job.id.as_ref() == Ok(id) {
                    if let Some(cancel) = &job.cancel {
                        cancel.raise(by, at);
                        raised = true;
                    }
                }
            }
        }
        raised
    }

    /// A new slot's share of the stats, listed for the heartbeats while the slot lives.
    pub fn slot(&self) -> SlotStats {
        let running = Arc::default();
        let mut slots = lock(&self.slots);
        slots.retain(|slot| slot.strong_count() > 0);
        slots.push(Arc::downgrade(&running));
        SlotStats {
            running,
            last: None,
        }
    }

    /// The counters of job `name` from `queue`, made the first time they are asked for.
    fn counts(&self, queue: &str, name: &str) -> Arc<Counts> {
        let mut per_job = lock(&self.per_job);
        let jobs = match per_job.get_mut(queue) {
            Some(jobs) => jobs,
            None => per_job.entry(queue.to_string()).or_default(),
        };
        match jobs.get(name) {
            Some(counts) => Arc::clone(counts),
            None => Arc::clone(jobs.entry(name.to_string()).or_default()),
        }
    }

    /// The counters, the histograms and the jobs running now.
    pub fn snapshot(&self) -> Snapshot {
        let (mut counters, mut timings) = (Vec::new(), Vec::new());
        for (queue, jobs) in lock(&self.per_job).iter() {
            for (job, counts) in jobs {
                // Made when a slot first met the job: counted once a run of it finished.
                let processed = counts.processed.load(Ordering::Relaxed);
                if processed > 0 {
                    counters.push(Counter {
                        queue: queue.clone(),
                        job: job.clone(),
                        processed,
                        failed: counts.failed.load(Ordering::Relaxed),
                    });
                }
                if processed > 0 || counts.latency.count() > 0 {
                    timings.push(Timing {
                        queue: queue.clone(),
                        job: job.clone(),
                        duration: counts.duration.snapshot(),
                        latency: counts.latency.snapshot(),
                    });
                }
            }
        }
        Snapshot {
            processed: self.processed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            counters,
            timings,
            jobs: lock(&self.slots)
                .iter()
                .filter_map(Weak::upgrade)
                .filter_map(|slot| lock(&slot).as_ref().map(InFlight::running_job))
                .collect(),
        }
    }
}

impl Running<'_> {
    /// Counts the run: processed, and failed unless `succeeded`; `took` is how long the
    /// job's function ran (`None` when it did not run: a rejected message, a job already
    /// run).
    pub fn finished(self, succeeded: bool, took: Option<std::time::Duration>) {
        if let Some(took) = took {
            self.counts.duration.record(took);
        }
        let failed = u64::from(!succeeded);
        self.counts.processed.fetch_add(1, Ordering::Relaxed);
        self.counts.failed.fetch_add(failed, Ordering::Relaxed);
        self.stats.processed.fetch_add(1, Ordering::Relaxed);
        self.stats.failed.fetch_add(failed, Ordering::Relaxed);
        // The drop takes it off the in-flight list.
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        lock(self.record).take();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a single insert, remove or increment: a panic cannot leave them torn.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::Format;

    pub(crate) fn meta(queue: &str, name: &str) -> JobMeta {
        JobMeta {
            id: Uuid::new_v4(),
            name: name.into(),
            queue: queue.into(),
            format: Format::Json,
            preview: "[]".into(),
            attempt: 1,
            max_attempts: None,
            enqueued_at_ms: 0,
            priority: None,
        }
    }

    /// One slot's runs, as `execute` makes them: (queue, job, succeeded).
    fn run(stats: &Stats, slot: &mut SlotStats, runs: &[(&str, &str, bool)]) {
        let delivery = Delivery::mock(1, "".into(), "q".into(), false, Vec::new());
        for &(queue, name, succeeded) in runs {
            let meta = meta(queue, name);
            let (running, _) = slot.started(stats, &delivery, Some(&meta), &Arc::default());
            let jobs = stats.snapshot().jobs;
            assert_eq!(jobs.len(), 1, "in flight while it runs");
            assert_eq!((&*jobs[0].queue, &*jobs[0].name), (queue, name));
            running.finished(succeeded, Some(std::time::Duration::from_millis(3)));
        }
    }

    fn counted(stats: &Stats) -> Vec<(String, String, u64, u64)> {
        let mut counters: Vec<_> = stats
            .snapshot()
            .counters
            .into_iter()
            .map(|c| (c.queue, c.job, c.processed, c.failed))
            .collect();
        counters.sort();
        counters
    }

    #[test]
    fn runs_are_counted_per_queue_and_job_whichever_slot_ran_them() {
        let stats = Stats::default();
        let (mut slot_a, mut slot_b) = (stats.slot(), stats.slot());
        // Slot a switches jobs and queues (its last job changes each time); slot b runs one
        // job again and again, and shares the counters slot a made for it.
        let a = [
            ("mail", "send", true),
            ("mail", "send", false),
            ("mail", "bounce", true),
            ("video", "send", true),
            ("mail", "send", true),
        ];
        run(&stats, &mut slot_a, &a);
        run(&stats, &mut slot_b, &[("mail", "send", false); 3]);
        assert_eq!(
            counted(&stats),
            [
                ("mail".into(), "bounce".into(), 1, 0),
                ("mail".into(), "send".into(), 6, 4),
                ("video".into(), "send".into(), 1, 0),
            ]
        );
        let snapshot = stats.snapshot();
        assert_eq!((snapshot.processed, snapshot.failed), (8, 4));
        assert!(snapshot.jobs.is_empty(), "nothing in flight after the runs");
    }

    #[test]
    fn runs_fill_the_duration_histogram_and_starts_the_wait_histogram() {
        let stats = Stats::default();
        let mut slot = stats.slot();
        run(
            &stats,
            &mut slot,
            &[("mail", "send", true), ("mail", "send", false)],
        );
        let timings = stats.snapshot().timings;
        assert_eq!(timings.len(), 1);
        // 3 ms runs: bucket (2, 5] ms, the third.
        assert_eq!(timings[0].duration.counts, [0, 0, 2]);
        assert_eq!(timings[0].duration.sums_us, [0, 0, 6000]);
        // meta() says enqueued at 0: no wait known, none recorded.
        assert!(timings[0].latency.counts.is_empty());
    }

    #[test]
    fn a_run_dropped_without_finishing_is_not_counted() {
        let stats = Stats::default();
        let meta = meta("mail", "send");
        let mut slot = stats.slot();
        let delivery = Delivery::mock(1, "".into(), "mail".into(), false, Vec::new());
        drop(slot.started(&stats, &delivery, Some(&meta), &Arc::default()));
        let snapshot = stats.snapshot();
        assert!(snapshot.jobs.is_empty());
        assert_eq!((snapshot.processed, snapshot.failed), (0, 0));
        assert!(
            counted(&stats).is_empty(),
            "no counter before a run finishes"
        );
    }
}

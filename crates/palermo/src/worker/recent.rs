//! The runs this worker finished lately, to recognise a job that arrives twice.
//!
//! A job id is unique per enqueue; a retry, a snooze or an admin retry of it carries a new
//! attempt, snooze or requeue count. So the same (id, attempt, snoozes) arriving again after a successful run means one
//! of two things: the broker redelivered a job whose ack was lost (the channel died right
//! after the run) — then it is acked without running again — or a publisher sent one job id
//! twice — then it goes to the failed queue with that reason, visible rather than run twice.
//! The memory is per worker process and bounded, so this narrows at-least-once duplicates;
//! it does not remove them (docs/reliability.md).

use std::{
    collections::{HashSet, VecDeque},
    sync::Mutex,
};

use lapin::types::FieldTable;
use uuid::Uuid;

use crate::wire::{self, header, JobMeta};

/// How many finished runs a worker remembers.
const CAPACITY: usize = 4096;

/// One run of one job.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) struct RunKey {
    id: Uuid,
    attempt: u32,
    snoozes: i64,
    requeues: i64,
}

impl RunKey {
    pub fn of(meta: &JobMeta, headers: &FieldTable) -> Self {
        let count = |name| wire::get_int(headers, name).ok().flatten().unwrap_or(0);
        Self {
            id: meta.id,
            attempt: meta.attempt,
            snoozes: count(header::SNOOZES),
            requeues: count(header::REQUEUES),
        }
    }
}

/// The last [`CAPACITY`] runs that succeeded, oldest forgotten first.
#[derive(Debug, Default)]
pub(crate) struct Recent(Mutex<(HashSet<RunKey>, VecDeque<RunKey>)>);

impl Recent {
    pub fn contains(&self, key: &RunKey) -> bool {
        self.lock().0.contains(key)
    }

    pub fn insert(&self, key: RunKey) {
        let mut guard = self.lock();
        let (set, order) = &mut *guard;
        if set.insert(key) {
            order.push_back(key);
            if order.len() > CAPACITY {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (HashSet<RunKey>, VecDeque<RunKey>)> {
        // Two collections updated together under one lock; a panic cannot happen in between.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_runs_only() {
        let recent = Recent::default();
        let key = |n: u32| RunKey {
            id: Uuid::nil(),
            attempt: n,
            snoozes: 0,
            requeues: 0,
        };
        for n in 0..(CAPACITY as u32 + 10) {
            recent.insert(key(n));
        }
        assert!(!recent.contains(&key(0)));
        assert!(recent.contains(&key(CAPACITY as u32 + 9)));
        assert_eq!(recent.lock().1.len(), CAPACITY);
    }
}

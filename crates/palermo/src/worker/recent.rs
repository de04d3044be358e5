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
    collections::{hash_map::RandomState, HashSet, VecDeque},
    hash::{BuildHasher, Hash, Hasher},
    sync::Mutex,
};

use lapin::types::FieldTable;
use uuid::Uuid;

use crate::wire::{self, header, JobMeta};

/// How many finished runs a worker remembers.
const CAPACITY: usize = 4096;

/// One run of one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RunKey {
    id: Uuid,
    attempt: u32,
    snoozes: i64,
    requeues: i64,
}

impl RunKey {
    pub fn of(meta: &JobMeta, headers: &FieldTable) -> Self {
        let [snoozes, requeues] = wire::find(headers, [header::SNOOZES, header::REQUEUES]);
        let count = |name, value| wire::int_value(name, value).ok().flatten().unwrap_or(0);
        Self {
            id: meta.id,
            attempt: meta.attempt,
            snoozes: count(header::SNOOZES, snoozes),
            requeues: count(header::REQUEUES, requeues),
        }
    }
}

/// Every field as one whole number each, for [`KeyHasher`].
impl Hash for RunKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(self.id.as_u128());
        state.write_u32(self.attempt);
        state.write_i64(self.snoozes);
        state.write_i64(self.requeues);
    }
}

/// Hashes run keys with a multiply-and-fold per word, seeded at random per process.
///
/// The set is looked up or changed two or three times per job, and the standard SipHash
/// cost about 350 instructions each on a run key (docs/performance.md). The keys come from
/// message headers, so whoever can publish to a queue chooses them; but the seed comes from
/// the standard library's random hash keys (the operating system's randomness) and is never
/// shown, so colliding keys cannot be chosen without it, and the set is bounded: even keys
/// that all collided would cost a scan of at most [`CAPACITY`] entries per lookup, not a
/// growing one.
#[derive(Debug, Clone, Copy)]
struct KeyHasher {
    seed: u64,
}

impl Default for KeyHasher {
    fn default() -> Self {
        Self {
            seed: RandomState::new().hash_one(0x7061_6c65_726d_6f00_u64),
        }
    }
}

impl BuildHasher for KeyHasher {
    type Hasher = KeyHash;

    fn build_hasher(&self) -> KeyHash {
        KeyHash(self.seed)
    }
}

/// The state of one [`KeyHasher`] hash.
struct KeyHash(u64);

impl KeyHash {
    /// An odd constant with well-spread bits (the fractional part of the golden ratio).
    const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

    fn mix(&mut self, word: u64) {
        let product = u128::from(self.0 ^ word) * u128::from(Self::MULTIPLIER);
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl Hasher for KeyHash {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_i64(&mut self, n: i64) {
        self.mix(n as u64);
    }

    fn write_u128(&mut self, n: u128) {
        self.mix(n as u64);
        self.mix((n >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        // One more round, so that the last word's bits reach the low bits the table uses.
        let mut last = KeyHash(self.0);
        last.mix(0);
        last.0
    }
}

/// The last [`CAPACITY`] runs that succeeded, oldest forgotten first.
#[derive(Debug, Default)]
pub(crate) struct Recent(Mutex<(HashSet<RunKey, KeyHasher>, VecDeque<RunKey>)>);

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

    fn lock(&self) -> std::sync::MutexGuard<'_, (HashSet<RunKey, KeyHasher>, VecDeque<RunKey>)> {
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

    #[test]
    fn keys_that_differ_in_any_field_hash_apart() {
        let hasher = KeyHasher::default();
        let mut keys = HashSet::new();
        for n in 0..2000u32 {
            let key = RunKey {
                id: Uuid::from_u128(u128::from(n) << 64),
                attempt: 1,
                snoozes: 0,
                requeues: 0,
            };
            let nil = Uuid::nil();
            keys.extend([
                key,
                RunKey {
                    attempt: n + 2,
                    ..key
                },
                RunKey {
                    snoozes: n.into(),
                    id: nil,
                    ..key
                },
                RunKey {
                    requeues: n.into(),
                    id: nil,
                    ..key
                },
                RunKey {
                    id: Uuid::from_u128(n.into()),
                    ..key
                },
            ]);
        }
        let hashes: HashSet<u64> = keys.iter().map(|key| hasher.hash_one(key)).collect();
        assert_eq!(hashes.len(), keys.len());
    }
}

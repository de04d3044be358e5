//! The scheduler token: the one message in the scheduler queue, held unacked by the active
//! scheduler, whose body is the schedules' last ticks. It is how the next leader knows what
//! was enqueued already (workers never need SQL): after each tick the leader publishes a new
//! token (confirmed) and acks the one it held.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The state a token carries.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct State {
    /// Per schedule name, the Unix milliseconds of the last tick enqueued.
    #[serde(default)]
    pub last: BTreeMap<String, i64>,
    /// Per schedule name, the Unix milliseconds of the last tick actually enqueued: behind
    /// `last` when the schedule was paused (its ticks skipped). Absent from older tokens.
    #[serde(default)]
    pub ran: BTreeMap<String, i64>,
    /// The scheduler that wrote it (`hostname:pid:queues`).
    #[serde(default)]
    pub leader: String,
    /// When it was written, Unix milliseconds.
    #[serde(default)]
    pub written_ms: i64,
}

impl State {
    /// Reads a token body; a body that is not a token (an operator's stray message) reads as
    /// an empty state rather than stopping the scheduler.
    pub fn read(body: &[u8]) -> Self {
        match serde_json::from_slice(body) {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(error = %e, "a message in the scheduler queue is not a token; ignoring its content");
                Self::default()
            }
        }
    }

    /// Keeps, per schedule, the later of the two last ticks (several tokens can exist for a
    /// moment when schedulers start together).
    pub fn merge(&mut self, other: State) {
        for (name, tick) in other.last {
            let last = self.last.entry(name).or_insert(tick);
            *last = (*last).max(tick);
        }
        for (name, tick) in other.ran {
            let ran = self.ran.entry(name).or_insert(tick);
            *ran = (*ran).max(tick);
        }
    }

    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::State;

    #[test]
    fn merge_keeps_the_latest_tick_per_schedule() {
        let mut a = State::default();
        a.last.insert("x".into(), 10);
        a.last.insert("y".into(), 5);
        let mut b = State::default();
        b.last.insert("x".into(), 7);
        b.last.insert("z".into(), 1);
        a.merge(State::read(&b.body()));
        assert_eq!(a.last.get("x"), Some(&10));
        assert_eq!(a.last.get("y"), Some(&5));
        assert_eq!(a.last.get("z"), Some(&1));
        assert_eq!(State::read(b"not json"), State::default());
    }
}

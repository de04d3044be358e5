//! Periodic jobs' ticks as the tests count them: each message's id mapped back to its tick
//! (the ids are deterministic: `palermo::periodic_job_id`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use palermo::periodic_job_id;

/// The tick of every message in `messages` (by its id), checking each id is a tick's id of
/// `schedule` between `from` and `to`; returns how many messages each tick has.
pub fn ticks_of(
    messages: &[(lapin::BasicProperties, Vec<u8>)],
    schedule: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> HashMap<i64, usize> {
    let mut ids = HashMap::new();
    let mut second = from.timestamp() - 1;
    while second <= to.timestamp() + 1 {
        let tick = DateTime::from_timestamp(second, 0).expect("tick");
        ids.insert(periodic_job_id(schedule, tick).to_string(), second);
        second += 1;
    }
    let mut counts = HashMap::new();
    for (properties, _) in messages {
        let id = properties.message_id().as_ref().map(|m| m.to_string());
        let tick = id.and_then(|id| ids.get(&id).copied());
        let tick = tick.unwrap_or_else(|| panic!("a message that is no tick: {properties:?}"));
        *counts.entry(tick).or_insert(0) += 1;
    }
    counts
}

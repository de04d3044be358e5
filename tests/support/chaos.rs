//! What the chaos tests share (tests/disruptive/disruptive_chaos.rs on one broker,
//! tests/cluster/cluster_chaos.rs on the cluster): random pauses, the `record_id` job's
//! arguments, and reading back the file its runs append their ids to, which is the durable
//! record of what ran.

use std::{collections::HashMap, path::Path};

use palermo::Format;
use uuid::Uuid;

use super::RawJob;

/// A number in `lo..hi` (no `rand` crate: UUIDs v4 are random enough here).
pub fn random(lo: u64, hi: u64) -> u64 {
    lo + (Uuid::new_v4().as_u128() % u128::from(hi - lo)) as u64
}

/// The test worker's `record_id` job for `queue`: works `work_ms`, then appends its id to
/// the file `record`.
pub fn record_id(queue: &str, record: &Path, work_ms: u64) -> RawJob {
    RawJob {
        name: "record_id".into(),
        queue: queue.into(),
        format: Format::Json,
        body: serde_json::to_vec(&serde_json::json!({
            "path": record.to_string_lossy(),
            "work_ms": work_ms,
        }))
        .expect("json"),
        max_attempts: None,
    }
}

/// Every well-formed id in the record file, with how many times it is there.
pub fn recorded(path: &Path) -> HashMap<Uuid, usize> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut counts = HashMap::new();
    for id in text.lines().filter_map(|line| line.parse::<Uuid>().ok()) {
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

/// How many worker processes logged their start in `log`.
pub fn started_workers(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.matches("worker started").count()
}

/// Lost and duplicated ids: `expected` ids missing from `seen`, and the extra copies of
/// those that are there (the at-least-once duplicates).
pub fn lost_and_duplicates(expected: &[Uuid], seen: &HashMap<Uuid, usize>) -> (usize, usize) {
    let lost = expected.iter().filter(|id| !seen.contains_key(id)).count();
    let duplicates = expected
        .iter()
        .map(|id| seen.get(id).copied().unwrap_or(0).saturating_sub(1))
        .sum();
    (lost, duplicates)
}

/// Prints the last 60 lines of a worker's log, newest first (when a chaos run lost jobs or a
/// worker failed, to see why).
pub fn print_log_tail(text: &str) {
    let tail: Vec<&str> = text.lines().rev().take(60).collect();
    eprintln!(
        "worker log (last lines, newest first):\n{}",
        tail.join("\n")
    );
}

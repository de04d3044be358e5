//! The error history a job carries from retry to retry: each failed attempt's error and time,
//! in the `x-palermo-error-history` header.
//!
//! It is a JSON array (any language and the admin side read it without an AMQP table
//! decoder) of `{"attempt": 2, "at": <ms since epoch>, "kind": "error", "error": "..."}`.
//! It is trimmed so that a job with many attempts keeps a small header: each error to
//! [`HISTORY_ERROR_MAX_BYTES`], and at most [`HISTORY_MAX_ENTRIES`] entries, the first
//! failure and the latest ones (the attempt numbers show the gap).

use lapin::types::FieldTable;
use serde::{Deserialize, Serialize};

use crate::wire::{self, header, HISTORY_ERROR_MAX_BYTES, HISTORY_MAX_ENTRIES};

/// One failed attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedAttempt {
    /// The attempt that failed (1 for the first run).
    pub attempt: u32,
    /// When it failed, ms since the epoch.
    pub at: i64,
    /// `x-palermo-error-kind`: `error`, `panic`, `timeout`...
    pub kind: String,
    /// The error, trimmed.
    pub error: String,
}

/// The history in `headers`; empty when there is none or it does not parse.
pub fn read(headers: &FieldTable) -> Vec<FailedAttempt> {
    wire::get_str(headers, header::ERROR_HISTORY)
        .ok()
        .flatten()
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default()
}

/// Adds `entry` (its error trimmed) to the history in `headers`, trimming the history.
pub fn append(headers: &mut FieldTable, mut entry: FailedAttempt) {
    let mut history = read(headers);
    entry.error = wire::truncate_bytes(&entry.error, HISTORY_ERROR_MAX_BYTES).to_string();
    history.push(entry);
    if history.len() > HISTORY_MAX_ENTRIES {
        let excess = history.len() - HISTORY_MAX_ENTRIES;
        history.drain(1..=excess);
    }
    // Serializing plain strings and numbers cannot fail; an empty array is the fallback.
    let json = serde_json::to_string(&history).unwrap_or_else(|_| "[]".into());
    wire::put_str(headers, header::ERROR_HISTORY, &json);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(attempt: u32, error: &str) -> FailedAttempt {
        FailedAttempt {
            attempt,
            at: 1_700_000_000_000 + i64::from(attempt),
            kind: "error".into(),
            error: error.into(),
        }
    }

    #[test]
    fn keeps_the_first_and_the_latest() {
        let mut headers = FieldTable::default();
        assert!(read(&headers).is_empty());
        for n in 1..=30 {
            append(&mut headers, entry(n, &"x".repeat(2000)));
        }
        let history = read(&headers);
        assert_eq!(history.len(), HISTORY_MAX_ENTRIES);
        let attempts: Vec<u32> = history.iter().map(|e| e.attempt).collect();
        assert_eq!(attempts[0], 1);
        assert_eq!(attempts[1], 12);
        assert_eq!(attempts[HISTORY_MAX_ENTRIES - 1], 30);
        assert!(history
            .iter()
            .all(|e| e.error.len() == HISTORY_ERROR_MAX_BYTES));
        let size = wire::get_str(&headers, header::ERROR_HISTORY)
            .unwrap()
            .unwrap()
            .len();
        assert!(size < 12 * 1024, "{size} bytes");
    }

    #[test]
    fn a_garbled_history_starts_over() {
        let mut headers = FieldTable::default();
        wire::put_str(&mut headers, header::ERROR_HISTORY, "not json");
        append(&mut headers, entry(3, "boom"));
        assert_eq!(read(&headers), vec![entry(3, "boom")]);
    }
}

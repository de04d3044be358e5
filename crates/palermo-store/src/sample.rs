//! Fake failures for benchmarks and load tests (`examples/fill_failures.rs`, the dashboard's
//! render benchmark): one generator, so that every measurement fills the same table.
//!
//! Failure `i` of `count` is spread over 20 queues and 50 job names, failed `count - i`
//! seconds before `now`, with an error of a few hundred bytes and a backtrace, like a real
//! failure after exhausted retries. Ids are UUIDs derived from `now` and `i`.

use crate::failures::NewFailure;

/// Fake failure `i` of `count`, relative to `now` (ms since the epoch).
#[doc(hidden)]
pub fn failure(i: usize, count: usize, now: i64) -> NewFailure {
    let failed_at = now - (count.saturating_sub(i)) as i64 * 1000;
    let id = |kind: &str| {
        uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            format!("{kind}-{now}-{i}").as_bytes(),
        )
        .to_string()
    };
    let body = format!(r#"{{"order":{i},"customer":"customer-{}"}}"#, i % 997);
    NewFailure {
        id: id("failure"),
        job_id: id("job"),
        job_name: format!("job_{}", i % 50),
        queue: format!("queue-{}", i % 20),
        source_queue: format!("queue-{}", i % 20),
        serializer: "json".into(),
        args_preview: body.clone(),
        body: body.into_bytes(),
        properties: "{}".into(),
        error_kind: "error".into(),
        error: format!(
            "upstream returned 503 for order {i}: {}",
            "service unavailable, retry later. ".repeat(8)
        ),
        backtrace: Some("   0: app::charge\n   1: palermo::worker::execute\n".repeat(10)),
        error_history: None,
        gave_up: Some("attempts_exhausted".into()),
        attempt: 15,
        max_attempts: Some(15),
        worker: format!("host-{}:{}:queue-{}", i % 4, 1000 + i % 4, i % 20),
        enqueued_at: Some(failed_at - 86_400_000),
        first_failed_at: failed_at - 86_000_000,
        failed_at,
    }
}

//! What the limits tests share (tests/suite/limits.rs, tests/disruptive/disruptive_limits.rs):
//! the test worker's `record_span` job, the spans it records, and whether a concurrency
//! slot queue is held on the broker.

use std::path::Path;

use lapin::{options::QueueDeclareOptions, types::FieldTable, Connection};
use palermo::{admin::RawJob, Client, Format, Options};

/// Enqueues the test worker's `record_span` job: work `ms`, then append the span to `path`.
pub async fn enqueue_span(client: &Client, queue: &str, path: &Path, ms: u64, key: &str) {
    let body = serde_json::json!({ "path": path, "ms": ms, "key": key });
    let job = RawJob {
        name: "record_span".into(),
        queue: queue.into(),
        format: Format::Json,
        body: serde_json::to_vec(&body).expect("json"),
        max_attempts: Some(1),
    };
    client
        .enqueue_raw(job, Options::new())
        .await
        .expect("enqueue record_span");
}

/// A recorded run: start and end in ms since the epoch, and its key.
#[derive(Debug, Clone)]
pub struct Span {
    pub start: u64,
    pub end: u64,
    pub key: String,
}

/// The spans recorded in `path` so far.
pub fn spans(path: &Path) -> Vec<Span> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ' ');
            Some(Span {
                start: parts.next()?.parse().ok()?,
                end: parts.next()?.parse().ok()?,
                key: parts.next()?.to_string(),
            })
        })
        .collect()
}

/// The most spans running at one moment (a span ending when another starts does not overlap
/// it).
pub fn max_overlap<'a>(spans: impl IntoIterator<Item = &'a Span>) -> usize {
    let mut events: Vec<(u64, i32)> = Vec::new();
    for span in spans {
        events.push((span.start, 1));
        events.push((span.end, -1));
    }
    // Ends before starts at the same millisecond.
    events.sort();
    let (mut running, mut most) = (0i32, 0i32);
    for (_, change) in events {
        running += change;
        most = most.max(running);
    }
    most as usize
}

/// Whether another connection holds the exclusive slot queue `name` (a passive declare is
/// refused with 405 RESOURCE_LOCKED); `false` when it does not exist.
pub async fn slot_held(connection: &Connection, name: &str) -> bool {
    let channel = connection.create_channel().await.expect("channel");
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let result = channel
        .queue_declare(name.into(), passive, FieldTable::default())
        .await;
    let refused = match result {
        Ok(_) => panic!("slot queue {name} exists but is not exclusive to another connection"),
        Err(e) => match e.kind() {
            lapin::ErrorKind::ProtocolError(amqp) => amqp.get_id(),
            _ => panic!("passive declare of {name}: {e}"),
        },
    };
    match refused {
        405 => true,
        404 => false,
        other => panic!("passive declare of {name}: refused with {other}"),
    }
}

//! Reading and writing the wire format by hand, for tests that publish what another
//! language would, or check the headers of what the worker published. The header names and
//! readers are the library's own (docs/wire-format.md); this is the one place the tests
//! reach them.

use lapin::{
    types::{AMQPValue, FieldTable},
    BasicProperties,
};

pub use palermo::admin::wire::header;

/// The headers of a message (empty when it has none).
pub fn headers(props: &BasicProperties) -> FieldTable {
    props.headers().clone().unwrap_or_default()
}

/// A string header.
pub fn header_str(props: &BasicProperties, name: &str) -> Option<String> {
    palermo::admin::wire::get_str(&headers(props), name)
        .ok()
        .flatten()
}

/// An integer header.
pub fn header_int(props: &BasicProperties, name: &str) -> Option<i64> {
    palermo::admin::wire::get_int(&headers(props), name)
        .ok()
        .flatten()
}

/// One failed run in a failure's history: attempt, unix time (ms), kind, error.
pub type Attempt = (u32, i64, String, String);

/// The error history a failed message carries, oldest first.
pub fn history(props: &BasicProperties) -> Vec<Attempt> {
    palermo::admin::wire::history::read(&headers(props))
        .into_iter()
        .map(|e| (e.attempt, e.at, e.kind, e.error))
        .collect()
}

/// The headers of a well-formed version-1 JSON message of job `job` for `queue`, as a
/// producer in another language writes them.
pub fn job_headers(job: &str, queue: &str) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(header::VERSION.into(), AMQPValue::LongInt(1));
    headers.insert(header::JOB.into(), AMQPValue::LongString(job.into()));
    headers.insert(
        header::SERIALIZER.into(),
        AMQPValue::LongString("json".into()),
    );
    headers.insert(header::QUEUE.into(), AMQPValue::LongString(queue.into()));
    headers
}

/// Properties with a fresh message id and `headers`.
pub fn with_headers(headers: FieldTable) -> BasicProperties {
    BasicProperties::default()
        .with_message_id(uuid::Uuid::new_v4().to_string().into())
        .with_headers(headers)
}

/// At most `max` bytes of `text`, cut on a character boundary (for printing reasons).
pub fn truncate(text: &str, max: usize) -> &str {
    palermo::admin::wire::truncate_bytes(text, max)
}

//! Reading what the recorder consumes: a failed job message into a [`NewFailure`], an event
//! into a [`Heartbeat`].
//!
//! Any message on the failed queue can be recorded, however broken: a missing header gets a
//! neutral value, so the failure can still be listed, shown and removed. A message without
//! `x-palermo-failure-id` (published by hand or by an old client) gets an id derived from its
//! content, so recording it twice still leaves one row.

use lapin::BasicProperties;
use palermo::admin::wire::{
    self,
    event::{EventError, Heartbeat},
    failure::FailureRecord,
    header,
};
use uuid::Uuid;

use crate::failures::NewFailure;

/// The failure a message of the failed queue describes.
pub fn failure(properties: &BasicProperties, body: &[u8]) -> NewFailure {
    let headers = wire::headers(properties);
    let text = |name| wire::get_str(headers, name).ok().flatten();
    let int = |name| wire::get_int(headers, name).ok().flatten();
    let record = FailureRecord::read(headers, wire::now_ms());

    let job_id = properties
        .message_id()
        .as_ref()
        .map(|id| id.to_string())
        .unwrap_or_default();
    let properties_json = serde_json::to_string(properties).unwrap_or_else(|_| "{}".into());
    let id = record
        .failure_id
        .unwrap_or_else(|| derived_id(&properties_json, body));
    let source_queue = record.source_queue.unwrap_or_default();
    let serializer = text(header::SERIALIZER).unwrap_or_default();
    let args_preview = text(header::PREVIEW).unwrap_or_else(|| preview_of(&serializer, body));
    NewFailure {
        id,
        job_id,
        job_name: text(header::JOB)
            .or_else(|| properties.kind().as_ref().map(|k| k.to_string()))
            .unwrap_or_default(),
        queue: text(header::QUEUE).unwrap_or_else(|| source_queue.clone()),
        source_queue,
        serializer,
        args_preview,
        body: body.to_vec(),
        properties: properties_json,
        error_kind: record.kind,
        error: record.error,
        backtrace: record.backtrace,
        error_history: text(header::ERROR_HISTORY),
        gave_up: record.gave_up,
        attempt: int(header::ATTEMPT).unwrap_or(1),
        max_attempts: int(header::MAX_ATTEMPTS),
        worker: record.worker,
        enqueued_at: int(header::ENQUEUED_AT),
        first_failed_at: record.first_failed_at,
        failed_at: record.failed_at,
    }
}

/// An event of the events exchange; `Err` says why it is not one this version reads.
pub fn event(body: &[u8]) -> Result<Heartbeat, EventError> {
    Heartbeat::parse(body)
}

/// A stable id for a failure message that carries none: the same message always gets the same.
fn derived_id(properties_json: &str, body: &[u8]) -> String {
    let mut content = properties_json.as_bytes().to_vec();
    content.push(0);
    content.extend_from_slice(body);
    Uuid::new_v5(&Uuid::NAMESPACE_OID, &content).to_string()
}

fn preview_of(serializer: &str, body: &[u8]) -> String {
    match palermo::Format::from_name(serializer).and_then(|f| f.to_json_value(body).ok()) {
        Some(value) => wire::preview(&value.to_string()),
        None => wire::preview(&String::from_utf8_lossy(body)),
    }
}

#[cfg(test)]
mod tests {
    use lapin::types::FieldTable;

    use super::*;

    #[test]
    fn a_bare_message_is_still_a_failure_with_a_stable_id() {
        let props = BasicProperties::default();
        let first = failure(&props, b"\xff raw");
        let again = failure(&props, b"\xff raw");
        assert_eq!(first.id, again.id);
        assert_ne!(first.id, failure(&props, b"other").id);
        assert_eq!(first.job_name, "");
        assert_eq!(first.error_kind, "unknown");
        assert_eq!(first.attempt, 1);
        assert_eq!(first.args_preview, "\u{fffd} raw");
    }

    #[test]
    fn headers_are_read() {
        let mut headers = FieldTable::default();
        wire::put_str(&mut headers, header::FAILURE_ID, "f-1");
        wire::put_str(&mut headers, header::JOB, "send_email");
        wire::put_str(&mut headers, header::SOURCE_QUEUE, "mail");
        wire::put_str(&mut headers, header::SERIALIZER, "json");
        wire::put_int(&mut headers, header::FAILED_AT, 5);
        let props = BasicProperties::default()
            .with_message_id("job-1".into())
            .with_headers(headers);
        let f = failure(&props, br#"{"to":"ada"}"#);
        assert_eq!((f.id.as_str(), f.job_id.as_str()), ("f-1", "job-1"));
        assert_eq!(
            f.queue, "mail",
            "the source queue when x-palermo-queue is missing"
        );
        assert_eq!(f.args_preview, r#"{"to":"ada"}"#);
        assert_eq!((f.failed_at, f.first_failed_at), (5, 5));
        let back: BasicProperties = serde_json::from_str(&f.properties).expect("round trip");
        assert_eq!(back, props);
    }
}

//! What a failure is, and publishing one to the failed queue: the original body and headers,
//! plus `x-palermo-*` failure headers and the error history of every attempt. The caller
//! acks the original only after this publish is confirmed.
//!
//! The headers every failed run adds, whether a retry follows ([`super::retrying`]) or not,
//! are written here, so a retrying job and a failed one carry the same record.

use lapin::{
    message::Delivery,
    types::{FieldTable, ShortString},
    BasicProperties, Channel,
};
use uuid::Uuid;

use super::Shared;
use crate::{
    broker, delay,
    error::Error,
    history::{self, FailedAttempt},
    wire::{self, header},
};

/// Why a delivery did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The job returned an error.
    Error,
    /// The job panicked.
    Panic,
    /// The job ran past its timeout and was cancelled.
    Timeout,
    /// The message is not a valid Palermo job (headers, properties).
    Malformed,
    /// No job of that name is linked into this worker.
    UnknownJob,
    /// The body could not be decoded into the job's arguments.
    Undecodable,
    /// The same run of the same job id arrived again after it succeeded.
    Duplicate,
    /// It came back too many times without a run finishing (see `worker/poison.rs`).
    Poison,
}

impl FailureKind {
    /// The value of the `x-palermo-error-kind` header.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Error => "error",
            FailureKind::Panic => "panic",
            FailureKind::Timeout => "timeout",
            FailureKind::Malformed => "malformed",
            FailureKind::UnknownJob => "unknown_job",
            FailureKind::Undecodable => "undecodable",
            FailureKind::Poison => "poison",
            FailureKind::Duplicate => "duplicate",
        }
    }

    /// Whether another attempt may succeed: a run that failed may, a message that cannot be
    /// run at all (malformed, unknown, undecodable) will not.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            FailureKind::Error | FailureKind::Panic | FailureKind::Timeout
        )
    }
}

/// Why a failed job goes to the failed queue rather than to a retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GaveUp {
    /// It failed on its last attempt.
    AttemptsExhausted,
    /// The job returned [`crate::JobError::fail_now`].
    FailNow,
    /// The message cannot be run ([`FailureKind::is_retryable`] is false).
    NotRetryable,
}

impl GaveUp {
    /// The value of the `x-palermo-gave-up` header.
    pub fn as_str(self) -> &'static str {
        match self {
            GaveUp::AttemptsExhausted => "attempts_exhausted",
            GaveUp::FailNow => "fail_now",
            GaveUp::NotRetryable => "not_retryable",
        }
    }
}

/// A failed run or a rejected message.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong, in a word.
    pub kind: FailureKind,
    /// The error, panic message or reason, for people.
    pub message: String,
    /// A backtrace, where there is one.
    pub backtrace: Option<String>,
}

impl Failure {
    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            backtrace: None,
        }
    }
}

/// Publishes `delivery` to the failed queue with `failure`'s headers and waits for the
/// confirm. `max_attempts` is written when known.
pub(crate) async fn publish(
    shared: &Shared,
    channel: &Channel,
    delivery: &Delivery,
    failure: &Failure,
    gave_up: GaveUp,
    max_attempts: Option<u32>,
) -> Result<(), Error> {
    let attempt = wire::get_int(wire::headers(&delivery.properties), header::ATTEMPT)
        .ok()
        .flatten()
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(1);
    let mut headers = failure_headers(shared, delivery, failure, attempt);
    wire::put_str(
        &mut headers,
        header::FAILURE_ID,
        &Uuid::new_v4().to_string(),
    );
    wire::put_str(&mut headers, header::GAVE_UP, gave_up.as_str());
    if let Some(max) = max_attempts {
        wire::put_int(&mut headers, header::MAX_ATTEMPTS, max.into());
    }
    if let Some(backtrace) = &failure.backtrace {
        wire::put_str(
            &mut headers,
            header::BACKTRACE,
            wire::truncate_bytes(backtrace, wire::BACKTRACE_MAX_BYTES),
        );
    }
    let routing_key = delivery.routing_key.as_str();
    let source = delay::destination(routing_key).unwrap_or(routing_key);
    wire::put_str(&mut headers, header::SOURCE_QUEUE, source);
    broker::publish_confirmed(
        channel,
        &shared.config.failed_queue,
        &delivery.data,
        republished(&delivery.properties, headers),
    )
    .await
}

/// The delivery's headers with this failure recorded: last error and its kind, failed-at,
/// first-failed-at, the worker, and the attempt appended to the error history. The broker's
/// dead-lettering headers and the previous run's backtrace, failure id and due time are
/// dropped.
pub(crate) fn failure_headers(
    shared: &Shared,
    delivery: &Delivery,
    failure: &Failure,
    attempt: u32,
) -> FieldTable {
    let now = wire::now_ms();
    let mut headers = without(
        wire::headers(&delivery.properties),
        &[
            header::BACKTRACE,
            header::FAILURE_ID,
            header::GAVE_UP,
            header::NEXT_RUN_AT,
        ],
    );
    let first_failed_at = wire::get_int(&headers, header::FIRST_FAILED_AT)
        .ok()
        .flatten()
        .unwrap_or(now);
    wire::put_str(&mut headers, header::ERROR_KIND, failure.kind.as_str());
    wire::put_str(
        &mut headers,
        header::ERROR,
        wire::truncate_bytes(&failure.message, wire::ERROR_MAX_BYTES),
    );
    wire::put_int(&mut headers, header::FAILED_AT, now);
    wire::put_int(&mut headers, header::FIRST_FAILED_AT, first_failed_at);
    wire::put_str(&mut headers, header::WORKER, &shared.identity);
    history::append(
        &mut headers,
        FailedAttempt {
            attempt,
            at: now,
            kind: failure.kind.as_str().to_string(),
            error: failure.message.clone(),
        },
    );
    headers
}

/// `headers` without `names` and without the headers RabbitMQ adds when it dead-letters a
/// message (`x-death`...), which grow with every pass through the delay queues.
pub(crate) fn without(headers: &FieldTable, names: &[&str]) -> FieldTable {
    let mut map = headers.inner().clone();
    map.retain(|name, _| {
        let name = name.as_str();
        !names.contains(&name)
            && name != "x-death"
            && !name.starts_with("x-first-death-")
            && !name.starts_with("x-last-death-")
    });
    FieldTable::from(map)
}

/// The properties for publishing a received job again, with new headers. `expiration` is
/// dropped (a per-message TTL would cut a delay short) and so is `user_id` (the broker
/// refuses a message whose user is not the publisher's).
pub(crate) fn republished(original: &BasicProperties, mut headers: FieldTable) -> BasicProperties {
    wire::fit_headers(&mut headers, wire::HEADERS_BUDGET);
    let mut props = BasicProperties::default()
        .with_headers(headers)
        .with_delivery_mode(2);
    let copy = |value: &Option<ShortString>| value.clone();
    if let Some(v) = copy(original.content_type()) {
        props = props.with_content_type(v);
    }
    if let Some(v) = copy(original.content_encoding()) {
        props = props.with_content_encoding(v);
    }
    if let Some(v) = copy(original.correlation_id()) {
        props = props.with_correlation_id(v);
    }
    if let Some(v) = copy(original.reply_to()) {
        props = props.with_reply_to(v);
    }
    if let Some(v) = copy(original.message_id()) {
        props = props.with_message_id(v);
    }
    if let Some(v) = copy(original.kind()) {
        props = props.with_type(v);
    }
    if let Some(v) = copy(original.app_id()) {
        props = props.with_app_id(v);
    }
    if let Some(v) = copy(original.cluster_id()) {
        props = props.with_cluster_id(v);
    }
    if let Some(v) = *original.priority() {
        props = props.with_priority(v);
    }
    if let Some(v) = *original.timestamp() {
        props = props.with_timestamp(v);
    }
    props
}

#[cfg(test)]
mod tests {
    use lapin::types::AMQPValue;

    use super::*;

    #[test]
    fn republishing_drops_what_would_break_a_delay() {
        let mut headers = FieldTable::default();
        wire::put_str(&mut headers, "x-death", "...");
        wire::put_str(&mut headers, "x-first-death-queue", "palermo.delay.retry.0");
        wire::put_str(&mut headers, header::JOB, "send_email");
        wire::put_str(&mut headers, header::BACKTRACE, "old");
        let kept = without(&headers, &[header::BACKTRACE]);
        let names: Vec<&str> = kept.inner().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, [header::JOB]);

        let original = BasicProperties::default()
            .with_expiration("1000".into())
            .with_user_id("someone".into())
            .with_message_id("id".into())
            .with_priority(3)
            .with_timestamp(17);
        let props = republished(&original, kept);
        assert_eq!(props.expiration(), &None);
        assert_eq!(props.user_id(), &None);
        assert_eq!(props.message_id().as_ref().map(|s| s.as_str()), Some("id"));
        assert_eq!(props.priority(), &Some(3));
        assert_eq!(props.timestamp(), &Some(17));
        assert_eq!(props.delivery_mode(), &Some(2));
        assert!(matches!(
            props
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get(header::JOB)),
            Some(AMQPValue::LongString(_))
        ));
    }
}

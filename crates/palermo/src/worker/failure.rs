//! What a failure is, and publishing one to the failed queue: the original body and headers
//! untouched, plus `x-palermo-*` failure headers. The caller acks the original only after
//! this publish is confirmed.

use lapin::{message::Delivery, types::FieldTable, BasicProperties, Channel};
use uuid::Uuid;

use super::Shared;
use crate::{
    broker,
    error::Error,
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
/// confirm.
pub(crate) async fn publish(
    shared: &Shared,
    channel: &Channel,
    delivery: &Delivery,
    failure: &Failure,
) -> Result<(), Error> {
    let properties = failed_properties(shared, delivery, failure);
    broker::publish_confirmed(
        channel,
        &shared.config.failed_queue,
        &delivery.data,
        properties,
    )
    .await
}

fn failed_properties(shared: &Shared, delivery: &Delivery, failure: &Failure) -> BasicProperties {
    let now = wire::now_ms();
    let mut headers: FieldTable = delivery.properties.headers().clone().unwrap_or_default();
    let first_failed_at = wire::get_int(&headers, header::FIRST_FAILED_AT)
        .ok()
        .flatten()
        .unwrap_or(now);
    wire::put_str(
        &mut headers,
        header::FAILURE_ID,
        &Uuid::new_v4().to_string(),
    );
    wire::put_str(&mut headers, header::ERROR_KIND, failure.kind.as_str());
    wire::put_str(
        &mut headers,
        header::ERROR,
        wire::truncate_bytes(&failure.message, wire::ERROR_MAX_BYTES),
    );
    if let Some(backtrace) = &failure.backtrace {
        wire::put_str(
            &mut headers,
            header::BACKTRACE,
            wire::truncate_bytes(backtrace, wire::BACKTRACE_MAX_BYTES),
        );
    }
    wire::put_int(&mut headers, header::FAILED_AT, now);
    wire::put_int(&mut headers, header::FIRST_FAILED_AT, first_failed_at);
    wire::put_str(&mut headers, header::WORKER, &shared.identity);
    wire::put_str(
        &mut headers,
        header::SOURCE_QUEUE,
        delivery.routing_key.as_str(),
    );
    delivery.properties.clone().with_headers(headers)
}
